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
* A query scores the centroids, takes the top `nprobe` lists, scores their rows and takes the
  top k (`probe`): one query's rows chunk by chunk, or, for a batch whose queries share lists,
  each probed list once against all its queries.

Storage (`quantize`): float32, float16 or int8 with one symmetric scale per row (the row's
largest |value| maps to 127); rows are dequantised in the scoring, score = (q . int8 row) x scale.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from keras_instance.export import ivf_scans

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


# --- choosing nprobe ----------------------------------------------------------------------------

def exact_top_k(queries: np.ndarray, rows: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """[Q, k] row numbers of each query's k largest inner products (NumPy, chunked over rows)."""
    queries = np.asarray(queries, np.float32)
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(rows), chunk):
        scores = queries @ np.asarray(rows[start:start + chunk], np.float32).T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        best_i = np.concatenate([best_i, top + start], 1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def probes_needed(rows: np.ndarray, lists: InvertedLists, queries: np.ndarray,
                  k: int = 10, truth: np.ndarray | None = None) -> np.ndarray:
    """[Q, k]: for each query's true top-k rows (`truth`, else `exact_top_k`), how many lists a
    probe must scan to reach it (1 + the rank of the row's list among the query's lists by
    centroid score, ties to the lower list as tf.math.top_k). A probe scores every row of its
    lists exactly, so a true neighbour is found iff its list is scanned: recall@k at nprobe p
    is mean(needed <= p), for every p at once, for float32 storage (float16 and int8 move
    scores, and so the top k, a little: `probe_recall` measures them)."""
    if truth is None:
        truth = exact_top_k(queries, rows, k)
    list_of_row = np.empty(len(rows), np.int64)
    list_of_row[lists.order] = np.repeat(np.arange(lists.nlist), np.diff(lists.offsets))
    ranking = np.argsort(-(np.asarray(queries, np.float32) @ lists.centroids.T), axis=1,
                         kind="stable")
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(lists.nlist)[np.newaxis], axis=1)
    return np.take_along_axis(rank, list_of_row[truth], axis=1) + 1


def check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target}")


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` [Q, k] found in the same row of `found` [Q, k]."""
    return float(np.mean([len(set(f) & set(t)) for f, t in zip(found, truth)]) / truth.shape[1])


def nprobe_for_recall(needed: np.ndarray, target: float) -> tuple[int, float]:
    """The smallest nprobe whose recall (`probes_needed`) reaches `target`, and that recall."""
    check_target(target)
    flat = np.sort(needed.ravel())
    # (1e-9: 0.56 x 5000 is 2800.0000000000005 in floating point, one rank too many)
    nprobe = int(flat[max(0, math.ceil(target * len(flat) - 1e-9) - 1)])
    return nprobe, float(np.mean(needed <= nprobe))


def probe_recall(values, scale, lists: InvertedLists, queries: np.ndarray, truth: np.ndarray,
                 nprobe: int) -> float:
    """recall@k of `probe` over the rows as stored (`values`, `scale`: quantised, in list order)
    against `truth` ([Q, k] input row numbers, exact float32 search)."""
    positions = probe(tf.constant(queries, tf.float32), values, scale,
                      tf.constant(lists.centroids), tf.constant(lists.offsets), nprobe,
                      truth.shape[1])[0].numpy()
    return recall_at_k(np.where(positions >= 0, lists.order[np.maximum(positions, 0)], -1), truth)


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


def probe(query: tf.Tensor, values: tf.Tensor, scale: tf.Tensor, centroids: tf.Tensor,
          offsets: tf.Tensor, nprobe, k, allowed: tf.Tensor | None = None,
          chunk: int | None = None, scan: str | None = None):
    """IVF top-k: (positions int64 [N, k], scores [N, k]), -1 / -inf past the candidates found.

    Each query's candidates are the rows of its `nprobe` best lists, in increasing storage order
    (lists are contiguous slices: a union of ranges, tf.ragged.range), so equal scores go to the
    lower position as in exact search. They are scored one of two ways, with equal results
    (`ivf_scans`): by query (each query's candidates gathered chunk by chunk) or by list (each
    probed list read once for all the queries that probe it). `scan` picks ("query", "list";
    default: by list when the batch makes at least nlist / 2 probes in all, so that its queries
    share lists: `benchmarks/index.py --scans` times both and the default side by side).
    `allowed` (bool [G], optional) drops rows outside a restriction."""
    values, scale, offsets = (dense_value(x) for x in (values, scale, offsets))
    nlist = tf.shape(centroids)[0]
    nprobe = tf.clip_by_value(tf.cast(nprobe, tf.int32), 1, nlist)
    coarse = tf.matmul(query, centroids, transpose_b=True)              # [N, nlist]
    lists = tf.sort(tf.math.top_k(coarse, k=nprobe).indices, axis=1)    # [N, nprobe]
    starts, ends = tf.gather(offsets, lists), tf.gather(offsets, lists + 1)
    lengths = tf.reduce_sum(ends - starts, axis=1)                      # [N] candidates
    positions = tf.ragged.range(tf.reshape(starts, [-1]), tf.reshape(ends, [-1])).flat_values
    first = tf.cumsum(lengths, exclusive=True)                          # query q's first
    dim = int(values.shape[1])
    scans = {
        "query": lambda: ivf_scans.by_query(query, values, scale, positions, lengths, first,
                                            int(chunk or ivf_scans.chunk_rows(dim))),
        "list": lambda: ivf_scans.by_list(query, values, scale, offsets, lists, starts, ends)}
    if scan not in (None, *scans):
        raise ValueError(f"scan must be one of {', '.join(scans)} or None, got {scan!r}")
    if scan is None:
        by_list = 2 * tf.shape(query)[0] * nprobe >= nlist
        scores = tf.cond(by_list, scans["list"], scans["query"])
    else:
        scores = scans[scan]()
    if allowed is not None:
        scores = tf.where(tf.gather(allowed, positions), scores, -np.inf)
    # one row per query: column j is its candidate first[q] + j; past its candidates, -inf
    columns = tf.range(tf.reduce_max(tf.concat([lengths, [0]], 0)))
    valid = columns < lengths[:, tf.newaxis]
    at = tf.where(valid, first[:, tf.newaxis] + columns, tf.size(scores, out_type=tf.int64))
    scores = tf.gather(tf.concat([scores, [-np.inf]], 0), at)          # [N, max(lengths)]
    columns, best = top_k_padded(scores, k)
    at = tf.where(columns >= 0, columns + first[:, tf.newaxis],
                  tf.size(positions, out_type=tf.int64))
    return tf.gather(tf.concat([positions, [-1]], 0), at), best


def all_scores(query: tf.Tensor, values: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """query [N, D] . every stored row -> [N, G] (exact search)."""
    return ivf_scans.scored(query, values, lambda: scale)


def top_k_padded(scores: tf.Tensor, k) -> tuple[tf.Tensor, tf.Tensor]:
    """(columns int64 [N, k], scores [N, k]): top-k of scores [N, C], padded to k with column -1
    and score -inf when C < k or past the finite scores. Ties: lower column first
    (tf.math.top_k)."""
    columns = tf.shape(scores)[1]
    scores = tf.pad(scores, [[0, 0], [0, tf.maximum(k - columns, 0)]], constant_values=-np.inf)
    top = tf.math.top_k(scores, k=k)
    found = tf.where(top.indices < columns, tf.cast(top.indices, tf.int64), -1)
    return tf.where(top.values > -np.inf, found, -1), top.values
