"""The served models, each a `tf.Module` on one base class: raw input in, what a client needs out.

    image_encoder   serving_default: images string[None] (JPEG/PNG/GIF/BMP/WebP ≤ 40 MP)
                                      → embedding float32[None, D], L2-normalised
    text_encoder    serving_default: sentences string[None] → embedding float32[None, D]
                    token_ids: sentences → token_ids int32[None, L]
    text_to_image   serving_default: sentences → ids string[None, k], scores float32[None, k]
                    search, search_by_embedding, embedding_of, index_info (IndexModule)
    image_to_text   serving_default: images → ids, captions string[None, k], scores [None, k]
                    search, search_by_embedding, embedding_of, index_info (IndexModule)

Everything between the raw input and the embedding runs inside the graph, with the code the
evaluation uses: `image_checks.checked_image_bytes`, `pipeline.decode_image`, then the run's test
geometry (keep_aspect: `pipeline.resize_short_side` + `dual_path.window_embedding`, one image at
a time so a request may mix aspect ratios; squash: the whole-image resize of
`pipeline.load_eval_image`; both through `pipeline.eval_pixels`, after the run's squash_to), the
flip-sum, `tokenizer.token_ids` (the training tokeniser and the
vocabulary's StaticHashTable) and the Position-Shift sum. So served embeddings equal
`retrieval.embeddings` on the same inputs. Index search (`gallery_index`) is exact (matmul +
top_k; ties: lower gallery index first, `tf.math.top_k`'s rule, the one `retrieval.metrics`
uses) or an IVF index (`ivf`). Core TensorFlow ops plus
TF Text's NormalizeUTF8 and CaseFoldUTF8, which TF Serving links in.

Each module names its model, its signatures, its input and the warmup batches TF Serving replays
before it serves; `layout.save` writes any of them.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.export.gallery_index import GalleryIndex
from keras_instance.export.image_checks import MAX_IMAGE_PIXELS, checked_image_bytes
from keras_instance.export.layout import SIGNATURE, demo_jpeg
from keras_instance.model.dual_path import DualPath, shift_sum_embedding, window_embedding
from keras_instance.text import tokenizer

IMAGE_MODEL = "image_encoder"
TEXT_MODEL = "text_encoder"
TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_TEXT = "image_to_text"
WARMUP_SENTENCES = ("a red circle on the left", "Two shapes: a large blue square and a cross.")


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """x / max(‖x‖, 1e-12), row-wise: exactly `retrieval.embeddings.l2_normalize`."""
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), 1e-12)


class ExportModule(tf.Module):
    """A served model: `model_name`, `input_name` ("images" or "sentences"), `signatures()`
    and `warmup_batches()`."""

    model_name = ""
    input_name = ""

    def __init__(self):
        super().__init__(name=self.model_name)

    def signatures(self) -> dict:
        return {SIGNATURE: self.serve}

    def warmup_batches(self) -> list[list[bytes]]:
        if self.input_name == "sentences":
            sentences = [s.encode("utf-8") for s in WARMUP_SENTENCES]
            return [sentences[:1], sentences]
        size = self.image_size
        return [[demo_jpeg(size, 0)], [demo_jpeg(size, 1), demo_jpeg(2 * size, 2)]]


class ImageEncoderModule(ExportModule):
    """`serving_default`: images (encoded bytes) [N] → {"embedding": [N, D]}.

    Each image is checked from its header first (`checked_image_bytes`: empty, unknown kind,
    truncated, more than `max_pixels`), then decoded exactly as evaluation decodes it
    (`pipeline.decode_image`: RGB, grayscale/CMYK converted, alpha dropped, a GIF's first frame).
    Any bad image fails the whole request with InvalidArgumentError; the server goes on.

    Geometry as in evaluation: "keep_aspect" embeds each image at its own size (short side
    `short_side`; a request may mix aspect ratios) with `model.window_embedding`; "squash"
    resizes all to image_size² and encodes them as one batch. Both first squash each image to
    `square`² where set (the run's squash_to: CUHK-PEDES as the authors test it).
    """

    model_name, input_name = IMAGE_MODEL, "images"

    def __init__(self, dual: DualPath, flip_sum: bool, max_pixels: int = MAX_IMAGE_PIXELS,
                 feature: str = "embedding", geometry: str = "squash", short_side: int = 256,
                 square: int = 0):
        super().__init__()
        self.encoder = dual.image_encoder()
        self.backbone, self.image_head = dual.backbone, dual.image_head  # tracked: saved
        self.backbone_name = dual.backbone_name
        self.image_size = int(dual.image_size)
        self.flip_sum = bool(flip_sum)
        self.max_pixels = int(max_pixels)
        self.feature = feature  # the branch output served as "embedding" (config.test.test_feature)
        self.geometry = geometry
        self.short_side = int(short_side)
        self.square = int(square)
        self.embed_dim = int(self.encoder.output[feature].shape[-1])

    def _decode(self, data, index) -> tf.Tensor:
        return pipeline.decode_image(checked_image_bytes(data, index, self.max_pixels))

    def _squashed(self, item) -> tf.Tensor:
        return pipeline.eval_pixels(self._decode(*item), "squash", self.image_size, 0,
                                    self.square)

    def _windows(self, pixels: tf.Tensor) -> tf.Tensor:
        return window_embedding(self.backbone, self.image_head, self.backbone_name,
                                self.image_size, pixels, self.feature)

    def _embed_whole(self, item) -> tf.Tensor:
        pixels = pipeline.eval_pixels(self._decode(*item), "keep_aspect", self.image_size,
                                      self.short_side, self.square)[tf.newaxis]
        embedding = self._windows(pixels)
        if self.flip_sum:
            embedding = embedding + self._windows(tf.image.flip_left_right(pixels))
        return embedding[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        items = (images, tf.range(tf.shape(images)[0]))
        if self.geometry == "keep_aspect":
            embedding = tf.map_fn(self._embed_whole, items,
                                  fn_output_signature=tf.TensorSpec([self.embed_dim], tf.float32))
            return {"embedding": _l2_normalize(embedding)}
        size = self.image_size
        pixels = tf.map_fn(self._squashed, items,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        embedding = self.encoder(pixels, training=False)[self.feature]
        if self.flip_sum:
            embedding = embedding + self.encoder(tf.image.flip_left_right(pixels),
                                                 training=False)[self.feature]
        return {"embedding": _l2_normalize(tf.cast(embedding, tf.float32))}


class TextEncoderModule(ExportModule):
    """`serving_default`: sentences [N] → {"embedding": [N, D]}; `token_ids` for inspection."""

    model_name, input_name = TEXT_MODEL, "sentences"

    def __init__(self, text_encoder: keras.Model, vocab: tokenizer.Vocabulary, max_length: int,
                 shift_sum: bool, feature: str = "embedding"):
        super().__init__()
        self.encoder = text_encoder
        self.table = vocab.lookup_table()  # a tracked resource: saved with the SavedModel
        self.max_length = int(max_length)
        self.shift_sum = bool(shift_sum)
        self.feature = feature  # the branch output served as "embedding" (config.test.test_feature)
        self.embed_dim = int(text_encoder.output[feature].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def token_ids(self, sentences):
        """The training pipeline's own front end (`tokenizer.token_ids`): int32 [N, max_length]."""
        return tokenizer.token_ids(sentences, self.table, self.max_length)

    def _embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.encoder(tokens, training=False)[self.feature], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        tokens = self.token_ids(sentences)
        embedding = (shift_sum_embedding(self.encoder, tokens, self.feature) if self.shift_sum
                     else self._embed(tokens))
        return {"embedding": _l2_normalize(embedding)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve_token_ids(self, sentences):
        return {"token_ids": self.token_ids(sentences)}

    def signatures(self) -> dict:
        return {**super().signatures(), "token_ids": self.serve_token_ids}


def image_module(config: Config, dual: DualPath) -> ImageEncoderModule:
    """The image encoder with a run's test-time settings (feature, geometry, flip-sum)."""
    t = config.test
    return ImageEncoderModule(dual, t.test_flip_sum, feature=t.test_feature,
                              geometry=t.test_geometry, short_side=config.short_side,
                              square=config.image.squash_to)


def text_module(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary) -> TextEncoderModule:
    """The text encoder with a run's test-time settings (feature, shift-sum)."""
    return TextEncoderModule(dual.text_encoder, vocab, config.data.max_length,
                             config.test.test_shift_sum, feature=config.test.test_feature)


# --- top-k indexes over a gallery -------------------------------------------------------------

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


class IndexModule(ExportModule):
    """A top-k index over a `GalleryIndex` (exact or IVF). Signatures besides serving_default:

    search               {input_name} [N], k int32 (1..max_k), tag string ("" = any), ids
                         string [M] (allow-list; empty = any; unknown ids match nothing)
                         → ids, paths, captions, tags (comma-joined) string [N, k], scores [N, k]
    search_by_embedding  embedding float32 [N, D] (not normalised by the graph), k, tag, ids
                         → the same outputs
    embedding_of         ids string [M] → embedding float32 [M, D] (stored rows, dequantised)
    index_info           no inputs → index ("exact" | "ivf"), storage, size, dim, nlist, nprobe,
                         max_k

    When fewer than k items match (a restriction, or a gallery smaller than k) the rest of a row
    is id "" with score -inf. A k outside 1..max_k, an embedding of the wrong width, an unknown
    tag, an unknown id in embedding_of: InvalidArgumentError naming the value and what is allowed.
    `search_by_embedding_nprobe` (a saved function, not a served signature) adds `nprobe` int32
    (0 = the export's) for measuring recall against speed in process.
    """

    def __init__(self, embeddings, ids, k: int, dim: int, **index_options):
        super().__init__()
        embeddings = np.asarray(embeddings, np.float32)
        self.k = _check_gallery(embeddings, ids, dim, k)
        self.index = GalleryIndex(embeddings, ids, **index_options)

    def _encode(self, inputs) -> tf.Tensor:
        raise NotImplementedError

    def _search_embedding(self, embedding, k, tag, ids, nprobe=0):
        return self.index.search(self.index.checked_embedding(embedding), k, tag, ids, nprobe)

    def _search_inputs(self, inputs, k, tag, ids):
        return self.index.search(self._encode(inputs), k, tag, ids)

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
        return {**super().signatures(), "search": self.search,
                "search_by_embedding": self.search_by_embedding,
                "embedding_of": self.embedding_of, "index_info": self.index_info}


class TextToImageModule(IndexModule):
    """`serving_default`: sentences [N] → {"ids": [N, k], "scores": [N, k]}; see IndexModule."""

    model_name, input_name = TEXT_TO_IMAGE, "sentences"

    def __init__(self, text_module: TextEncoderModule, embeddings: np.ndarray,
                 ids: Sequence[str], k: int = DEFAULT_K, **index_options):
        super().__init__(embeddings, ids, k, text_module.embed_dim, **index_options)
        self.text = text_module

    def _encode(self, sentences):
        return self.text.serve(sentences)["embedding"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        top = self._top(self._encode(sentences))
        return {"ids": top["ids"], "scores": top["scores"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences"), K_SPEC,
                                  TAG_SPEC, IDS_SPEC])
    def search(self, sentences, k, tag, ids):
        return self._search_inputs(sentences, k, tag, ids)


class ImageToTextModule(IndexModule):
    """`serving_default`: images [N] → {"ids", "captions", "scores"}, each [N, k]; see
    IndexModule."""

    model_name, input_name = IMAGE_TO_TEXT, "images"

    def __init__(self, image_module: ImageEncoderModule, embeddings: np.ndarray,
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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images"), K_SPEC,
                                  TAG_SPEC, IDS_SPEC])
    def search(self, images, k, tag, ids):
        return self._search_inputs(images, k, tag, ids)


class EmbeddingIndexModule(IndexModule):
    """An index queried by embeddings only, its encoder the identity: `serving_default` and
    `search` take `embedding` float32 [N, D] (for an encoder of one's own, the index benchmark
    and tests); see IndexModule. Not written by the programs, so it has no warmup requests."""

    model_name, input_name = "embedding_index", "embedding"

    def __init__(self, embeddings, ids, k: int = DEFAULT_K, **index_options):
        super().__init__(embeddings, ids, k, int(np.shape(embeddings)[1]), **index_options)

    def warmup_batches(self) -> list:
        return []

    def _encode(self, inputs):
        return inputs

    @tf.function(input_signature=[EMBEDDING_SPEC])
    def serve(self, embedding):
        return self._top(embedding)

    @tf.function(input_signature=[EMBEDDING_SPEC, K_SPEC, TAG_SPEC, IDS_SPEC])
    def search(self, embedding, k, tag, ids):
        return self._search_inputs(embedding, k, tag, ids)
