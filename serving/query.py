"""The index models' query API from Python, without TensorFlow: `SearchClient`.

    from serving.client import SearchClient
    with SearchClient("localhost:8500") as search:
        result = search.text_search(["a red car"], k=5, tag="street")
        for hit in result.hits[0]:
            print(hit.score, hit.id, hit.path, hit.caption, hit.tags)

The index models (`text_to_image`: sentences → images, `image_to_text`: images → captions) serve,
beside `serving_default` (a fixed k, kept for older clients), three signatures:

    search               sentences | images string[N], k int32 scalar, tag string scalar ("": no
                         restriction), ids string[M] (allow-list; empty: all; unknown ids
                         match nothing) [, nprobe int32]
                         → ids, scores, paths, captions, tags, each [N, k]
    search_by_embedding  embedding float32[N, D], k, tag, ids [, nprobe] → the same outputs
    embedding_of         ids string[M] → embedding float32[M, D] (the gallery's stored rows)
    search_nprobe,       an approximate index's search / search_by_embedding plus nprobe
    search_by_embedding_nprobe   int32 (lists scanned per query; 0 = the index's own)
    index_info           no inputs → index ("exact" | "ivf"), storage, size, dim, nlist,
                         nprobe, max_k, expected_recall

A query with fewer matches than k is padded with id "" and score -inf; the hits here leave the
padding out. `tags` is comma-joined in the graph and a tuple here. Which inputs a signature takes
is read once per model from GetModelMetadata: `nprobe` is sent only where the index has it (an
approximate one: as an input of the signature, or through its `_nprobe` twin), and an index
exported before these signatures is named in a one-line error
instead of a failed RPC. The server checks k, the vector width, tags and ids; its
INVALID_ARGUMENT message is the `ServerError`'s.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Iterable, Sequence

import grpc
import numpy as np

from serving import rpc
from serving.constants import DEFAULT_SIGNATURE

SEARCH, SEARCH_BY_EMBEDDING, EMBEDDING_OF = "search", "search_by_embedding", "embedding_of"
INDEX_INFO = "index_info"
TEXT_TO_IMAGE, IMAGE_TO_TEXT = "text_to_image", "image_to_text"
TEXT_ENCODER, IMAGE_ENCODER = "text_encoder", "image_encoder"
# Inputs of search / search_by_embedding besides the query itself, and the values meaning "no
# restriction" (nprobe 0: the index's own default).
CONTROL_INPUTS = ("k", "tag", "ids", "nprobe")
NPROBE_SUFFIX = "_nprobe"  # search_nprobe, search_by_embedding_nprobe: the same plus nprobe
FALLBACK_K = 10  # when serving_default's k cannot be read from the metadata


# --------------------------------------------------------------------------- results

@dataclasses.dataclass(frozen=True)
class Hit:
    """One gallery item found: its id, score (dot product of L2-normalised embeddings: cosine)
    and the metadata stored at indexing (image path or URL, caption, tags); "" / () where the
    index has none."""
    id: str
    score: float
    path: str = ""
    caption: str = ""
    tags: tuple[str, ...] = ()

    def as_dict(self, rank: int | None = None) -> dict:
        d = {"rank": rank} if rank is not None else {}
        d.update(id=self.id, score=self.score, path=self.path, caption=self.caption,
                 tags=list(self.tags))
        return d


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The hits of each query (best first, padding left out), what answered, and the time from
    the first request sent to the last answer decoded (both RPCs of `more_like_this`)."""
    hits: list[list[Hit]]
    queries: list[str]  # a label per query: the sentence, the file, "like ID", ...
    model: str
    version: int
    signature: str
    k: int
    elapsed_ms: float

    def as_dict(self) -> dict:
        return {"model": self.model, "version": self.version, "signature": self.signature,
                "k": self.k, "elapsed_ms": round(self.elapsed_ms, 3),
                "queries": [{"query": label, "hits": [h.as_dict(rank) for rank, h in
                                                      enumerate(hits, start=1)]}
                            for label, hits in zip(self.queries, self.hits)]}


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """Embedding rows [N, D] (float32), one per input, and what answered."""
    vectors: np.ndarray
    model: str
    version: int
    signature: str
    elapsed_ms: float

    def as_dict(self) -> dict:
        return {"model": self.model, "version": self.version, "signature": self.signature,
                "elapsed_ms": round(self.elapsed_ms, 3),
                "embeddings": self.vectors.astype(float).tolist()}


class SearchError(Exception):
    """A query that could not be answered; `message` is one line for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServerError(SearchError):
    """The server answered with an error: `code` (grpc.StatusCode) and its own `details`
    (for INVALID_ARGUMENT: what was wrong with k, the vector, the tag or an id)."""

    def __init__(self, message: str, code: grpc.StatusCode | None, details: str):
        super().__init__(message)
        self.code, self.details = code, details


class UnsupportedError(SearchError):
    """The served model lacks what the query needs (a signature, or an input such as nprobe)."""


# --------------------------------------------------------------------------- requests

def string_scalar(value: str) -> np.ndarray:
    """A 0-d string array: sent as a scalar string tensor (a plain str would be sent as [1])."""
    out = np.empty((), dtype=object)
    out[()] = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return out


def string_list(values: Iterable[str]) -> np.ndarray:
    """A 1-d string array, also when empty (an empty list would be sent as float32)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"give ids as a list of strings, not one string {values!r:.40}")
    items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def as_vectors(vectors) -> np.ndarray:
    """Query embeddings as float32 [N, D]: one vector ([D]) or several ([N, D]), all finite."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"an embedding query is one vector [D] or several [N, D], got shape "
                         f"{list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError("the query embedding holds NaN or infinite values")
    return array


def _check_int32(name: str, value) -> None:
    """TypeError unless `value` is an integer (not a bool or float: 2.5 is not sent as 2),
    ValueError unless it fits an int32; the server checks its range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r:.40}")
    if not -2 ** 31 <= int(value) < 2 ** 31:
        raise ValueError(f"{name} = {value} does not fit an int32")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def hits_from_outputs(outputs: dict) -> list[list[Hit]]:
    """Per query, the hits of a search answer (`ids` and `scores` [N, k]; `paths`, `captions`,
    `tags` where present), without the padding (id "" / score -inf)."""
    ids, scores = outputs["ids"], outputs["scores"]
    columns = {name: outputs[name] for name in ("paths", "captions", "tags")
               if name in outputs and outputs[name].shape == ids.shape}
    result = []
    for row in range(ids.shape[0]):
        hits = []
        for col in range(ids.shape[1]):
            item, score = _text(ids[row, col]), float(scores[row, col])
            if not item or (math.isinf(score) and score < 0):
                continue
            meta = {name: _text(values[row, col]) for name, values in columns.items()}
            tags = tuple(t for t in meta.get("tags", "").split(",") if t)
            hits.append(Hit(item, score, meta.get("paths", ""), meta.get("captions", ""), tags))
        result.append(hits)
    return result


def default_k(signatures: dict) -> int | None:
    """The k of the model's serving_default (its ids output's second dimension), where the
    signature states it (None where it is dynamic)."""
    sig = signatures.get(DEFAULT_SIGNATURE)
    if sig is not None and "ids" in sig.outputs:
        dims = sig.outputs["ids"].tensor_shape.dim
        if len(dims) == 2 and dims[1].size > 0:
            return int(dims[1].size)
    return None


# --------------------------------------------------------------------------- the client

class SearchClient:
    """Queries the index and encoder models of one server (TF Serving or the stand-in) over
    gRPC. Methods return `SearchResult` / `Embeddings` and raise `ServerError` (the server's
    answer, one line in `.message`), `UnsupportedError` (the served model lacks the signature or
    input) or ValueError/TypeError (a bad argument, before anything is sent).

    `k=None` asks for the k of the model's serving_default where its signature states it, else
    10 (at most the index's max_k, from index_info); `tag=""` and `ids=()` restrict
    nothing; `nprobe=None` leaves an approximate index at its exported default (exact indexes
    have no nprobe). `version` / `label` pin the model version."""

    def __init__(self, server: str = rpc.DEFAULT_SERVER, *,
                 deadline_s: float = rpc.DEFAULT_DEADLINE_S,
                 max_message_mb: float = rpc.DEFAULT_MAX_MESSAGE_MB,
                 text_model: str = TEXT_TO_IMAGE, image_model: str = IMAGE_TO_TEXT,
                 text_encoder: str = TEXT_ENCODER, image_encoder: str = IMAGE_ENCODER):
        self.server, self.deadline_s = server, deadline_s
        self.text_model, self.image_model = text_model, image_model
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self._channel = rpc.make_channel(server, max_message_mb)
        self._stub = rpc.prediction_stub(self._channel)
        self._metadata: dict[tuple, tuple[int, dict]] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries
    def text_search(self, sentences: str | Sequence[str], k: int | None = None, tag: str = "",
                    ids: Sequence[str] = (), nprobe: int | None = None, *,
                    model: str | None = None, version: int | None = None,
                    label: str | None = None) -> SearchResult:
        """The gallery items (images, for text_to_image) nearest each sentence."""
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        return self._query(model or self.text_model, SEARCH, None, sentences, list(sentences),
                           k, tag, ids, nprobe, version, label)

    def image_search(self, images, k: int | None = None, tag: str = "",
                     ids: Sequence[str] = (), nprobe: int | None = None, *,
                     model: str | None = None, version: int | None = None,
                     label: str | None = None) -> SearchResult:
        """The gallery items (captions, for image_to_text) nearest each image: JPEG/PNG/... bytes
        or paths of image files (one, or a list)."""
        values, labels = _read_images(images)
        return self._query(model or self.image_model, SEARCH, None, values, labels, k, tag, ids,
                           nprobe, version, label)

    def embedding_search(self, vectors, gallery_model: str | None = None,
                         k: int | None = None, tag: str = "", ids: Sequence[str] = (),
                         nprobe: int | None = None, *, version: int | None = None,
                         label: str | None = None) -> SearchResult:
        """The items of `gallery_model`'s gallery (default: text_to_image's images) nearest each
        vector, [D] or [N, D], in the served embedding space (e.g. from your own encoder)."""
        array = as_vectors(vectors)
        labels = [f"embedding {i} (L2 norm {np.linalg.norm(v):.4f})" for i, v in enumerate(array)]
        return self._query(gallery_model or self.text_model, SEARCH_BY_EMBEDDING, "embedding",
                           array, labels, k, tag, ids, nprobe, version, label)

    def more_like_this(self, item_ids: str | Sequence[str], gallery_model: str | None = None,
                       k: int | None = None, tag: str = "", ids: Sequence[str] = (),
                       nprobe: int | None = None, *, version: int | None = None,
                       label: str | None = None) -> SearchResult:
        """The items nearest gallery item(s) `item_ids`, in the same gallery: its stored row
        (embedding_of), then search_by_embedding on the same model version. The item itself
        comes first (score ≈ 1) unless a tag or id list leaves it out."""
        item_ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        if not item_ids:
            raise ValueError("more_like_this needs at least one gallery id")
        start = time.perf_counter()
        rows = self.embedding_of(item_ids, gallery_model, version=version, label=label)
        result = self._query(rows.model, SEARCH_BY_EMBEDDING, "embedding", rows.vectors,
                             [f"like {i}" for i in item_ids], k, tag, ids, nprobe,
                             rows.version, None)  # the version that gave the rows
        return dataclasses.replace(result, elapsed_ms=(time.perf_counter() - start) * 1e3)

    def embedding_of(self, item_ids: str | Sequence[str], gallery_model: str | None = None, *,
                     version: int | None = None, label: str | None = None) -> Embeddings:
        """The stored gallery rows of `item_ids` (unknown ids: the server's INVALID_ARGUMENT)."""
        model = gallery_model or self.text_model
        item_ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        signature, _ = self._signature(model, EMBEDDING_OF, version, label)
        (name,) = list(signature.inputs) if len(signature.inputs) == 1 else ("ids",)
        return self._embed(model, EMBEDDING_OF, {name: string_list(item_ids)}, version, label)

    def embed_text(self, sentences: str | Sequence[str], *, version: int | None = None,
                   label: str | None = None) -> Embeddings:
        """The text encoder's embeddings of the sentences."""
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        return self._embed(self.text_encoder, DEFAULT_SIGNATURE, {"sentences": sentences},
                           version, label)

    def embed_images(self, images, *, version: int | None = None,
                     label: str | None = None) -> Embeddings:
        """The image encoder's embeddings of the images (bytes or file paths)."""
        values, _ = _read_images(images)
        return self._embed(self.image_encoder, DEFAULT_SIGNATURE, {"images": values}, version,
                           label)

    def index_info(self, gallery_model: str | None = None, *, version: int | None = None,
                   label: str | None = None) -> dict:
        """What the index is (its `index_info` signature): {"index": "exact" | "ivf",
        "storage", "size", "dim", "nlist", "nprobe", "max_k", "expected_recall"} as Python
        values (expected_recall: recall@10 at nprobe against exact search, measured at build
        time; 1.0 for exact search)."""
        model = gallery_model or self.text_model
        self._signature(model, INDEX_INFO, version, label)
        outputs, _, _ = self._call(model, INDEX_INFO, {}, version, label)
        return {name: (_text(a.item()) if a.dtype == object else a.item())
                for name, a in sorted(outputs.items()) if a.size == 1}

    def signatures(self, model: str, version: int | None = None,
                   label: str | None = None) -> dict:
        """{signature name: SignatureDef} of the served model (GetModelMetadata, cached)."""
        return self._metadata_of(model, version, label)[1]

    # -- internals
    def _metadata_of(self, model, version, label) -> tuple[int, dict]:
        key = (model, version, label)
        if key not in self._metadata:
            try:
                self._metadata[key] = rpc.get_metadata(self._stub, model, version, label,
                                                       self.deadline_s)
            except grpc.RpcError as e:
                raise self._server_error(e, model, version, label) from None
        return self._metadata[key]

    def _signature(self, model, name, version, label):
        served, signatures = self._metadata_of(model, version, label)
        if name not in signatures:
            have = ", ".join(sorted(s for s in signatures if not s.startswith("__")))
            raise UnsupportedError(
                f"model '{model}' version {served} on {self.server} has no '{name}' signature "
                f"(it has {have or 'none'}): not an index model, or one exported before "
                f"per-request k, tags, id lists and embedding queries (export it again with "
                f"keras_instance.cli.index)")
        return signatures[name], signatures

    def _query(self, model, signature_name, query_name, query, labels, k, tag, ids, nprobe,
               version, label) -> SearchResult:
        signature, signatures = self._signature(model, signature_name, version, label)
        with_nprobe = signature_name + NPROBE_SUFFIX  # an approximate index's nprobe twin
        if nprobe is not None and "nprobe" not in signature.inputs and with_nprobe in signatures:
            signature_name, signature = with_nprobe, signatures[with_nprobe]
        if k is None:
            k = self._default_k(model, signatures, version, label)
        _check_int32("k", k)
        if nprobe is not None:
            _check_int32("nprobe", nprobe)
        if tag is None:
            tag = ""
        id_list = string_list(ids if ids is not None else ())
        wanted = {"k": (np.int32(k), True), "tag": (string_scalar(tag), bool(tag)),
                  "ids": (id_list, id_list.size > 0),
                  "nprobe": (np.int32(nprobe or 0), nprobe is not None)}
        names = set(signature.inputs)
        if query_name is None:  # search: the one string input that is not a control
            others = sorted(names - set(CONTROL_INPUTS))
            if len(others) != 1:
                raise UnsupportedError(f"model '{model}' signature '{signature_name}' has inputs "
                                       f"{others} besides {list(CONTROL_INPUTS)}: expected one "
                                       f"query input (sentences or images)")
            query_name = others[0]
        inputs = {query_name: query}
        for name, (value, given) in wanted.items():
            if name in names:
                inputs[name] = value
            elif given:
                why = (" (an exact index has none; an approximate index exported before "
                       "2026-12-07 has none either: export it again with "
                       "keras_instance.cli.index)" if name == "nprobe" else "")
                raise UnsupportedError(f"model '{model}' signature '{signature_name}' has no "
                                       f"'{name}' input{why}")
        unknown = names - set(inputs)
        if unknown:
            raise UnsupportedError(f"model '{model}' signature '{signature_name}' needs inputs "
                                   f"{sorted(unknown)} this client does not know")
        outputs, served, elapsed_ms = self._call(model, signature_name, inputs, version, label)
        if "ids" not in outputs or "scores" not in outputs:
            raise UnsupportedError(f"model '{model}' signature '{signature_name}' answered "
                                   f"{sorted(outputs)}, not ids and scores")
        return SearchResult(hits_from_outputs(outputs), list(labels), model, served,
                            signature_name, int(k), elapsed_ms)

    def _default_k(self, model, signatures, version, label) -> int:
        """serving_default's k where its signature states it; else 10, capped at the index's
        max_k (index_info) so that a query without k is never refused for it."""
        k = default_k(signatures)
        if k is not None:
            return k
        k = FALLBACK_K
        if INDEX_INFO in signatures:
            max_k = self.index_info(model, version=version, label=label).get("max_k")
            if isinstance(max_k, int) and max_k >= 1:
                return min(k, max_k)
        return k

    def _embed(self, model, signature_name, inputs, version, label) -> Embeddings:
        outputs, served, elapsed_ms = self._call(model, signature_name, inputs, version, label)
        if "embedding" not in outputs:
            raise UnsupportedError(f"model '{model}' signature '{signature_name}' answered "
                                   f"{sorted(outputs)}, not an embedding")
        return Embeddings(outputs["embedding"], model, served, signature_name, elapsed_ms)

    def _call(self, model, signature_name, inputs, version, label):
        start = time.perf_counter()
        try:
            response = rpc.predict_response(self._stub, model, inputs, version, label,
                                            self.deadline_s, signature_name)
        except grpc.RpcError as e:
            raise self._server_error(e, model, version, label) from None
        outputs = {name: rpc.from_tensor_proto(p) for name, p in response.outputs.items()}
        served = response.model_spec.version.value
        cached = self._metadata.get((model, version, label))
        if cached is not None and cached[0] != served:  # a new version: read its metadata anew
            self._metadata.pop((model, version, label), None)
        return outputs, served, (time.perf_counter() - start) * 1e3

    def _server_error(self, e: grpc.RpcError, model, version, label) -> ServerError:
        code = e.code() if hasattr(e, "code") else None
        details = rpc.tidy_details((e.details() if hasattr(e, "details") else str(e)) or "")
        return ServerError(rpc.describe_error(e, self.server, model, version, label,
                                              self.deadline_s), code, details)


def _read_images(images) -> tuple[list[bytes], list[str]]:
    """Image bytes and a label per image, from bytes or file paths (one or a list)."""
    if isinstance(images, (bytes, bytearray, str, os.PathLike)):
        images = [images]
    values, labels = [], []
    for i, item in enumerate(images):
        if isinstance(item, (bytes, bytearray)):
            values.append(bytes(item))
            labels.append(f"image {i}")
        else:
            with open(item, "rb") as f:
                values.append(f.read())
            labels.append(os.fspath(item))
    return values, labels
