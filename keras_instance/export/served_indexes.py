"""The served indexes: an encoder plus a gallery searched inside the SavedModel.

Search (`gallery_index`) is exact (matmul + top_k; ties: lower gallery index first,
`tf.math.top_k`'s rule, the one `retrieval.metrics` uses) or an IVF index (`ivf`), chosen by the
gallery's size or the `index` option. Besides `serving_default` (the export's k, no
restriction: what older clients call) each index serves `search`, `search_by_embedding`,
`embedding_of` and `index_info` (`ServedIndex`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_instance.export.gallery_index import GalleryIndex
from keras_instance.export.served_encoders import ServedImageEncoder, ServedTextEncoder
from keras_instance.export.served_model import IMAGE_TO_TEXT, TEXT_TO_IMAGE, ServedModel

DEFAULT_K = 10
K_SPEC = tf.TensorSpec([], tf.int32, name="k")
TAG_SPEC = tf.TensorSpec([], tf.string, name="tag")
IDS_SPEC = tf.TensorSpec([None], tf.string, name="ids")
EMBEDDING_SPEC = tf.TensorSpec([None, None], tf.float32, name="embedding")
NPROBE_SPEC = tf.TensorSpec([], tf.int32, name="nprobe")


def _check_gallery(embeddings: np.ndarray, ids: Sequence[str], dim: int, k: int) -> int:
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] != dim:
        raise ValueError(f"gallery embeddings must be [G >= 1, {dim}], got {embeddings.shape}")
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} gallery ids for {len(embeddings)} embeddings")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(int(k), len(ids))


class ServedIndex(ServedModel):
    """A top-k index over a `GalleryIndex` (exact or IVF). Signatures besides serving_default:

    search               {input_name} [N], k int32 (1..max_k), tag string ("" = any), ids
                         string [M] (allow-list; empty = any; unknown ids match nothing)
                         → ids, paths, captions, tags (comma-joined) string [N, k], scores [N, k]
    search_by_embedding  embedding float32 [N, D] (not normalised by the graph), k, tag, ids
                         → the same outputs
    search_nprobe,       IVF indexes only: the two above plus nprobe int32 (lists scanned per
    search_by_embedding_nprobe   query, 1..nlist; 0 = the index's own), a per-request trade of
                         recall for latency (`search` keeps the inputs every index takes)
    embedding_of         ids string [M] → embedding float32 [M, D] (stored rows, dequantised)
    index_info           no inputs → index ("exact" | "ivf"), storage, size, dim, nlist, nprobe,
                         max_k, expected_recall (recall@10 at nprobe against exact search,
                         measured when the index was built; 1 for exact search)

    When fewer than k items match (a restriction, or a gallery smaller than k) the rest of a row
    is id "" with score -inf. A k outside 1..max_k, an embedding of the wrong width, an unknown
    tag, an unknown id in embedding_of, an nprobe outside 0..nlist: InvalidArgumentError naming
    the value and what is allowed. Subclasses give `input_spec`, the query input of `search`.
    """

    input_spec: tf.TensorSpec = None

    def __init__(self, embeddings, ids, k: int, dim: int, **index_options):
        super().__init__()
        embeddings = np.asarray(embeddings, np.float32)
        self.k = _check_gallery(embeddings, ids, dim, k)
        self.index = GalleryIndex(embeddings, ids, **index_options)
        controls = [K_SPEC, TAG_SPEC, IDS_SPEC]
        self.search = tf.function(self._search_inputs,
                                  input_signature=[self.input_spec] + controls)
        self.search_nprobe = tf.function(self._search_inputs,
                                         input_signature=[self.input_spec] + controls +
                                         [NPROBE_SPEC])

    def _encode(self, inputs) -> tf.Tensor:
        raise NotImplementedError

    def _search_embedding(self, embedding, k, tag, ids, nprobe=0):
        return self.index.search(self.index.checked_embedding(embedding), k, tag, ids, nprobe)

    def _search_inputs(self, inputs, k, tag, ids, nprobe=0):
        return self.index.search(self._encode(inputs), k, tag, ids, nprobe)

    @tf.function(input_signature=[EMBEDDING_SPEC, K_SPEC, TAG_SPEC, IDS_SPEC])
    def search_by_embedding(self, embedding, k, tag, ids):
        return self._search_embedding(embedding, k, tag, ids)

    @tf.function(input_signature=[EMBEDDING_SPEC, K_SPEC, TAG_SPEC, IDS_SPEC, NPROBE_SPEC])
    def search_by_embedding_nprobe(self, embedding, k, tag, ids, nprobe):
        return self._search_embedding(embedding, k, tag, ids, nprobe)

    @tf.function(input_signature=[IDS_SPEC])
    def embedding_of(self, ids):
        return {"embedding": self.index.embedding_of(ids)}

    @tf.function(input_signature=[])
    def index_info(self):
        return self.index.info()

    def _top(self, query) -> dict:
        """serving_default's search: the export's k, no restriction."""
        return self.index.search(query, self.k, tf.constant(""), tf.zeros([0], tf.string))

    def signatures(self) -> dict:
        nprobe = ({"search_nprobe": self.search_nprobe,
                   "search_by_embedding_nprobe": self.search_by_embedding_nprobe}
                  if self.index.kind == "ivf" else {})
        return {**super().signatures(), "search": self.search,
                "search_by_embedding": self.search_by_embedding,
                "embedding_of": self.embedding_of, "index_info": self.index_info, **nprobe}


class TextToImageIndex(ServedIndex):
    """`serving_default`: sentences [N] → {"ids": [N, k], "scores": [N, k]}; see ServedIndex."""

    model_name, input_name = TEXT_TO_IMAGE, "sentences"
    input_spec = tf.TensorSpec([None], tf.string, name="sentences")

    def __init__(self, text_module: ServedTextEncoder, embeddings: np.ndarray,
                 ids: Sequence[str], k: int = DEFAULT_K, **index_options):
        super().__init__(embeddings, ids, k, text_module.embed_dim, **index_options)
        self.text = text_module

    def _encode(self, sentences):
        return self.text.serve(sentences)["embedding"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        top = self._top(self._encode(sentences))
        return {"ids": top["ids"], "scores": top["scores"]}


class ImageToTextIndex(ServedIndex):
    """`serving_default`: images [N] → {"ids", "captions", "scores"}, each [N, k]; see
    ServedIndex."""

    model_name, input_name = IMAGE_TO_TEXT, "images"
    input_spec = tf.TensorSpec([None], tf.string, name="images")

    def __init__(self, image_module: ServedImageEncoder, embeddings: np.ndarray,
                 ids: Sequence[str], captions: Sequence[str], k: int = DEFAULT_K,
                 **index_options):
        if len(captions) != len(ids):
            raise ValueError(f"{len(captions)} captions for {len(ids)} caption ids")
        super().__init__(embeddings, ids, k, image_module.embed_dim, captions=captions,
                         **index_options)
        self.image = image_module  # decoding, resizing and encoding: the image encoder's own
        self.image_size = image_module.image_size  # warmup images

    def _encode(self, images):
        return self.image.serve(images)["embedding"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        top = self._top(self._encode(images))
        return {"ids": top["ids"], "captions": top["captions"], "scores": top["scores"]}


class EmbeddingIndex(ServedIndex):
    """An index queried by embeddings only, its encoder the identity: `serving_default` and
    `search` take `embedding` float32 [N, D] (for an encoder of one's own, the index benchmark
    and tests); see ServedIndex. Not written by the programs, so it has no warmup requests."""

    model_name, input_name = "embedding_index", "embedding"
    input_spec = EMBEDDING_SPEC

    def __init__(self, embeddings, ids, k: int = DEFAULT_K, **index_options):
        super().__init__(embeddings, ids, k, int(np.shape(embeddings)[1]), **index_options)

    def warmup_batches(self) -> list:
        return []

    def _encode(self, inputs):
        return inputs

    @tf.function(input_signature=[EMBEDDING_SPEC])
    def serve(self, embedding):
        return self._top(embedding)
