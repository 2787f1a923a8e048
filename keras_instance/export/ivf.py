"""An inverted-file (IVF) index that stock TF Serving runs: built in NumPy, searched with core ops.

Why IVF: exact search reads every gallery row per query (1M x 1024 float32 is 4 GB); ScaNN and
faiss need a custom op or server. IVF as faiss's IndexIVFFlat builds it, with the same choices:

* `nlist` ~ 4 sqrt(N) coarse centroids (faiss's guidance: 4-16 sqrt(N)), trained by an existing
  k-means (scikit-learn's KMeans, Lloyd, random init as faiss's, 10 iterations as IndexIVF's
  training) on a sample of `TRAIN_PER_LIST` rows per centroid (faiss: 39-256). faiss trains
  spherical k-means for the inner-product metric; here the centroids are L2-normalised after
  training, and rows go to the centroid of largest inner product (IndexFlatIP's assignment).
* Rows are stored sorted by list (`InvertedLists.order`), each list a contiguous slice given by
  `offsets` (int64 [nlist + 1]).
* A query scores the centroids, takes the top `nprobe` lists, gathers their rows, scores them and
  takes the top k (`probe`).

Storage (`quantize`): float32, float16 or int8 with one symmetric scale per row (the row's
largest |value| maps to 127); rows are dequantised in the scoring, score = (q . int8 row) x scale.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

STORAGES = ("float32", "float16", "int8")
TRAIN_PER_LIST = 40       # k-means sample: rows per centroid (faiss warns below 39, caps at 256)
KMEANS_ITERATIONS = 10    # faiss's IndexIVF trains its coarse quantizer with 10 iterations


def default_nlist(num_rows: int) -> int:
    """4 sqrt(N) lists, at least 1, at most N."""
    return max(1, min(int(num_rows), int(round(4 * math.sqrt(num_rows)))))


def train_centroids(rows: np.ndarray, nlist: int, seed: int = 0,
                    per_list: int = TRAIN_PER_LIST) -> np.ndarray:
    """[nlist, D] L2-normalised centroids: scikit-learn KMeans on a random sample of rows."""
    from sklearn.cluster import KMeans
    n = len(rows)
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be between 1 and the gallery size {n}, got {nlist}")
    rng = np.random.default_rng(seed)
    sample = rows[np.sort(rng.choice(n, min(n, per_list * nlist), replace=False))]
    kmeans = KMeans(nlist, init="random", n_init=1, max_iter=KMEANS_ITERATIONS,
                    random_state=seed, algorithm="lloyd").fit(sample.astype(np.float32))
    centroids = kmeans.cluster_centers_.astype(np.float32)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def assign(rows: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The list of each row: the centroid of largest inner product (ties: lower list first)."""
    out = np.empty(len(rows), np.int64)
    for start in range(0, len(rows), chunk):
        block = np.asarray(rows[start:start + chunk], np.float32)
        out[start:start + chunk] = np.argmax(block @ centroids.T, axis=1)
    return out


@dataclasses.dataclass
class InvertedLists:
    centroids: np.ndarray   # [nlist, D] float32
    order: np.ndarray       # [N] int64: storage position -> input row (sorted by list, stable)
    offsets: np.ndarray     # [nlist + 1] int64: list l holds storage positions offsets[l:l+1]

    @property
    def nlist(self) -> int:
        return len(self.centroids)


def build_lists(rows: np.ndarray, nlist: int | None = None, seed: int = 0,
                centroids: np.ndarray | None = None) -> InvertedLists:
    """Train (or reuse) centroids, assign every row, sort rows by list."""
    if centroids is None:
        centroids = train_centroids(rows, nlist or default_nlist(len(rows)), seed)
    lists = assign(rows, centroids)
    order = np.argsort(lists, kind="stable").astype(np.int64)
    counts = np.bincount(lists, minlength=len(centroids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return InvertedLists(centroids, order, offsets)


def exact_lists(num_rows: int, dim: int) -> InvertedLists:
    """One list holding every row in input order: what an exact index stores."""
    return InvertedLists(np.zeros((1, dim), np.float32), np.arange(num_rows, dtype=np.int64),
                         np.array([0, num_rows], np.int64))


# --- storage ----------------------------------------------------------------------------------

def quantize(rows: np.ndarray, storage: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, scale [N] float32): rows ~= values * scale[:, None]. Scale is 1 for float types."""
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}: choose from {', '.join(STORAGES)}")
    rows = np.asarray(rows, np.float32)
    if storage == "float32":
        return rows, np.ones(len(rows), np.float32)
    if storage == "float16":
        return rows.astype(np.float16), np.ones(len(rows), np.float32)
    scale = (np.abs(rows).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    values = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return values, scale


def dequantize(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32) * np.asarray(scale, np.float32)[:, None]


def storage_bytes(num_rows: int, dim: int, storage: str) -> int:
    """Bytes of the stored rows and their scales (`quantize`'s output)."""
    return num_rows * (dim * np.dtype(storage).itemsize + 4)


# --- search (graph) ---------------------------------------------------------------------------

def dense_value(variable) -> tf.Tensor:
    """The variable's value (ReadVariableOp: the buffer itself); every gather from a stored
    variable reads through it. tf.gather on the variable (ResourceGather) switches it to
    copy-on-read, after which each dense read, as exact search's matmul, copies the whole gallery
    (a 400k x 256 float32 variable: 0.5 ms -> 360 ms per read, AMD EPYC,
    benchmarks/index.py --copy_on_read)."""
    return tf.convert_to_tensor(variable)


def _list_positions(centroid_scores: tf.Tensor, offsets: tf.Tensor, nprobe) -> tf.Tensor:
    """Storage positions int64 [C] of the rows in one query's `nprobe` best lists (lists are
    contiguous slices, so this is a union of ranges: tf.ragged.range, no loop), in increasing
    storage order, so that equal scores go to the lower position as in exact search."""
    lists = tf.sort(tf.math.top_k(centroid_scores, k=nprobe).indices)
    ranges = tf.ragged.range(tf.gather(offsets, lists), tf.gather(offsets, lists + 1))
    return ranges.flat_values


def _scan(query: tf.Tensor, values: tf.Tensor, scale: tf.Tensor, positions: tf.Tensor):
    """One query [D] . the stored rows at `positions` [C] -> scores [C], dequantised."""
    scores = tf.linalg.matvec(tf.cast(tf.gather(values, positions), tf.float32), query)
    return scores * tf.gather(scale, positions) if values.dtype == tf.int8 else scores


def probe(query: tf.Tensor, values: tf.Tensor, scale: tf.Tensor, centroids: tf.Tensor,
          offsets: tf.Tensor, nprobe, k, allowed: tf.Tensor | None = None):
    """IVF top-k: (positions int64 [N, k], scores [N, k]), -1 / -inf past the candidates found.

    `allowed` (bool [G], optional) drops rows outside a restriction. Queries are scanned one at a
    time (tf.map_fn): gathering every query's candidates at once into one [N, C, D] tensor was
    2-4x slower for 64 queries (a fresh 150 MB buffer per call), the same for one query."""
    values, scale, offsets = (dense_value(x) for x in (values, scale, offsets))
    nprobe = tf.clip_by_value(tf.cast(nprobe, tf.int32), 1, tf.shape(centroids)[0])
    coarse = tf.matmul(query, centroids, transpose_b=True)            # [N, nlist]

    def one(item):
        q, centroid_scores = item
        positions = _list_positions(centroid_scores, offsets, nprobe)
        scores = _scan(q, values, scale, positions)
        if allowed is not None:
            scores = tf.where(tf.gather(allowed, positions), scores, -np.inf)
        found, best = top_k_padded(scores[tf.newaxis], positions[tf.newaxis], k)
        return found[0], best[0]

    def single():  # one query (the common request): no loop
        found, best = one((query[0], coarse[0]))
        return found[tf.newaxis], best[tf.newaxis]

    def each():
        found, best = tf.map_fn(one, (query, coarse), parallel_iterations=4,
                                fn_output_signature=(tf.TensorSpec([None], tf.int64),
                                                     tf.TensorSpec([None], tf.float32)))
        return found, best

    def none():  # an empty batch: map_fn cannot stack zero rows of unknown length
        return tf.zeros([0, k], tf.int64), tf.zeros([0, k], tf.float32)
    count = tf.shape(query)[0]
    return tf.case([(tf.equal(count, 1), single), (tf.equal(count, 0), none)], default=each)


def all_scores(query: tf.Tensor, values: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """query [N, D] . every stored row -> [N, G] (exact search)."""
    scores = tf.matmul(query, tf.cast(values, tf.float32), transpose_b=True)
    return scores * scale if values.dtype == tf.int8 else scores


def top_k_padded(scores: tf.Tensor, positions: tf.Tensor | None, k) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k of scores [N, C] with positions (None: column j is position j), padded to k with
    score -inf and position -1 when C < k. Ties: lower column first (tf.math.top_k)."""
    columns = tf.shape(scores)[1]
    missing = tf.maximum(k - columns, 0)
    scores = tf.pad(scores, [[0, 0], [0, missing]], constant_values=-np.inf)
    top = tf.math.top_k(scores, k=k)
    if positions is None:
        found = tf.cast(top.indices, tf.int64)
        found = tf.where(top.indices < columns, found, -1)
    else:
        positions = tf.pad(positions, [[0, 0], [0, missing]], constant_values=-1)
        found = tf.gather(positions, top.indices, batch_dims=1)
    return tf.where(top.values > -np.inf, found, -1), top.values
