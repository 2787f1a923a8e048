"""Two ways to score the candidates of a batch of IVF queries, with equal results.

`ivf.probe` hands each a batch's probed lists and takes back the score of every candidate (the
rows of a query's lists, in increasing storage order): `by_query` gathers each query's rows
chunk by chunk; `by_list` reads each probed list once, as a slice, for all its queries. Both
are one while loop whose step reads its bounds from one precomputed row (a step costs tens of
microseconds of graph overhead, at 1M x 256 more than its matmul: 2,750 list steps per batch of
64 at nprobe 73 of 4,000 lists). `benchmarks/index.py --scans` times them side by side; their
scores are equal bit for bit on exactly representable values (tests/test_ivf.py).
"""
from __future__ import annotations

import tensorflow as tf

SCAN_CHUNK_BYTES = 2**21  # bytes of rows, as scored (float32), per step of the by-query scan
PARALLEL_STEPS = 8        # while-loop steps in flight: one step's overhead hides another's matmul


def chunk_rows(dim: int) -> int:
    """Rows per step of the by-query scan: about `SCAN_CHUNK_BYTES` of rows as scored (float32,
    whatever the storage: int8 and float16 rows are cast before the matmul)."""
    return max(64, SCAN_CHUNK_BYTES // (int(dim) * 4))


def scored(queries: tf.Tensor, rows: tf.Tensor, row_scale) -> tf.Tensor:
    """queries [Q, D] . stored rows [R, D] -> [Q, R], dequantised (`row_scale()`: int8's [R])."""
    scores = tf.matmul(queries, tf.cast(rows, tf.float32), transpose_b=True)
    return scores * row_scale() if rows.dtype == tf.int8 else scores


def by_query(query, values, scale, positions, lengths, first, chunk: int) -> tf.Tensor:
    """Scores [sum(lengths)] of every query's candidates, in `positions`' order: one while loop
    over (query, chunk of `chunk` rows) pairs. A chunk gathered from the gallery stays in cache
    while it is scored, where gathering all of a query's candidates at once (tens of MB at 1M
    rows) cost a second trip to memory and, past glibc's mmap threshold, fresh pages on every
    call (benchmarks/index.py)."""
    chunks = (lengths + chunk - 1) // chunk
    chunk_starts = tf.cumsum(chunks, exclusive=True)
    steps = tf.reduce_sum(chunks)
    owner = tf.searchsorted(chunk_starts, tf.range(steps), side="right") - 1  # chunk -> query
    begin = tf.gather(first, owner) + (tf.range(steps) - tf.gather(chunk_starts, owner)) * chunk
    end = tf.minimum(begin + chunk, tf.gather(first + lengths, owner))
    table = tf.stack([begin, end, tf.cast(owner, tf.int64)], 1)  # step i: its rows, its query

    def scan(i, scores):
        lo, hi, q = tf.unstack(table[i])
        at = positions[lo:hi]
        s = scored(query[q:q + 1], tf.gather(values, at), lambda: tf.gather(scale, at))
        return i + 1, scores.write(tf.cast(i, tf.int32), s[0])
    scores = tf.TensorArray(tf.float32, size=tf.cast(steps, tf.int32), infer_shape=False,
                            element_shape=[None])
    _, scores = tf.while_loop(lambda i, _: i < steps, scan, (tf.constant(0, tf.int64), scores),
                              parallel_iterations=PARALLEL_STEPS)
    return scores.concat()


def by_list(query, values, scale, offsets, lists, starts, ends) -> tf.Tensor:
    """The same scores, one while loop over the distinct lists the batch probes: each list is a
    slice of the stored rows (no copy), scored against all its queries in one matmul, so a list
    probed by several queries of a batch is read once (a batch of 64 probing 1/16 of the lists
    reads each about 4 times by query: benchmarks/index.py)."""
    nprobe = tf.shape(lists)[1]
    pairs = tf.reshape(lists, [-1])                             # pair p = (query p // nprobe)
    order = tf.argsort(pairs, stable=True)                      # pairs grouped by list
    grouped = tf.gather(pairs, order)
    distinct, _, counts = tf.unique_with_counts(grouped)        # sorted, so in list order
    group_start = tf.cumsum(counts, exclusive=True)
    owners = tf.gather(query, order // nprobe)                  # each pair's query, grouped

    first_row, end_row = tf.gather(offsets, distinct), tf.gather(offsets, distinct + 1)
    # step i: rows lo:hi of list distinct[i], its queries a:b of owners
    steps = tf.stack([first_row, end_row,
                      tf.cast(group_start, tf.int64), tf.cast(group_start + counts, tf.int64)], 1)

    def scan(i, scores):
        lo, hi, a, b = tf.unstack(steps[i])
        s = scored(owners[a:b], values[lo:hi], lambda: scale[lo:hi])
        return i + 1, scores.write(i, tf.reshape(s, [-1]))     # [queries of the list, rows]
    scores = tf.TensorArray(tf.float32, size=tf.size(distinct), infer_shape=False,
                            element_shape=[None])
    _, scores = tf.while_loop(lambda i, _: i < tf.size(distinct), scan, (0, scores),
                              parallel_iterations=PARALLEL_STEPS)
    scores = scores.concat()
    # pair p's scores: block of its list, row of its rank among the list's queries
    size = end_row - first_row
    block = tf.cumsum(tf.cast(counts, tf.int64) * size, exclusive=True)
    group = tf.searchsorted(group_start, tf.range(tf.size(order)), side="right") - 1
    rank = tf.cast(tf.range(tf.size(order)) - tf.gather(group_start, group), tf.int64)
    begin_grouped = tf.gather(block, group) + rank * tf.gather(size, group)
    begin = tf.scatter_nd(order[:, tf.newaxis], begin_grouped, tf.shape(order))
    length = tf.reshape(ends - starts, [-1])
    return tf.gather(scores, tf.ragged.range(begin, begin + length).flat_values)
