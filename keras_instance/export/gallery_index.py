"""The searchable gallery inside an index SavedModel: its rows, ids and metadata as variables, and
top-k search over them with a per-request k, tag or id restriction, in core TF ops only.

Every tensor is a tf.Variable (never a graph constant: a 1M x 1024 gallery is 4 GB, over
protobuf's 2 GB graph limit), so `read_gallery` gets the rows back from the checkpoint alone and
a new version is built from an old one without encoding anything again.

Search is exact (one matmul over every row, `ivf.all_scores`) or IVF (`ivf.probe`); `--index=auto`
picks exact below `EXACT_BELOW` rows. Why 50,000: exact search over 50k x 256 float32 takes about
5 ms per query on the 2-core Xeon (22 ms at 200k, measured), already interactive, while IVF costs
recall and, at build time, a k-means and an exact search of the tuning queries.

Restrictions (`tag`, `ids`) make a mask over the rows. With few allowed rows, probing lists would
find few of them, so the allowed rows are scanned exactly instead whenever there are at most
`SUBSET_SCAN_FACTOR` x nprobe x (mean list length) of them: about what 8 probes' worth of lists
cost to scan, and then the answer is exact over the subset. Above that, lists are probed as usual
and disallowed rows dropped (results may then be fewer than k: padded with id "" and -inf).
"""
from __future__ import annotations

import collections
import json

import numpy as np
import tensorflow as tf

from keras_instance.export import ivf

EXACT_BELOW = 50_000
INDEX_KINDS = ("auto", "exact", "ivf")
SUBSET_SCAN_FACTOR = 8
DEFAULT_MAX_K = 100
_HASH_BUCKETS = 2**63 - 1  # tf.strings.to_hash_bucket_fast: Fingerprint64 mod this, as int64


def choose_kind(kind: str, num_rows: int) -> str:
    if kind not in INDEX_KINDS:
        raise ValueError(f"index {kind!r}: choose from {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "ivf" if num_rows >= EXACT_BELOW else "exact"
    return kind


DEFAULT_TARGET_RECALL = 0.95
TUNING_QUERIES = 500


def default_nprobe(nlist: int) -> int:
    """Lists probed per query when no recall target is given: nlist / 32 (at least 8)."""
    return max(1, min(nlist, max(8, int(round(nlist / 32)))))


def tuning_sample(embeddings: np.ndarray, queries: np.ndarray | None,
                  seed: int = 0) -> tuple[np.ndarray, str, np.ndarray]:
    """(up to `TUNING_QUERIES` queries to choose nprobe on, what they are, those to keep for
    version N+1): a sample of `queries` (e.g. the other modality's embeddings: real cross-modal
    queries) or, without them, of the gallery rows, whose recall is higher than cross-modal
    queries see (a row finds itself first), and which version N+1 samples afresh."""
    given = queries is not None and len(queries) > 0
    source = queries if given else embeddings
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(source), min(len(source), TUNING_QUERIES), replace=False))
    used = np.asarray(source[pick], np.float32)
    what = f"{len(pick)} {'queries given' if given else 'gallery rows as queries'}"
    return used, what, used if given else np.zeros([0, embeddings.shape[1]], np.float32)


def choose_nprobe(embeddings: np.ndarray, lists: ivf.InvertedLists, nprobe: int | None,
                  target: float | None, queries: np.ndarray, stored=None) -> tuple[int, float]:
    """(nprobe, its recall@10 against exact float32 search on `queries`): `nprobe` if given,
    else the fewest lists per query whose recall reaches `target`, else `default_nprobe`.
    `stored` ((values, scale) of float16 or int8 rows, in list order): their recall is measured
    with the served probe, and a chosen nprobe raised until it reaches the target (their
    rounding moves some neighbours out of the top 10: about 0.005 at 1M int8 rows), up to 4x
    the float32 choice."""
    if target is not None:
        ivf.check_target(target)
    truth = ivf.exact_top_k(queries, embeddings, 10)
    needed = ivf.probes_needed(embeddings, lists, queries, truth=truth)
    tuned = nprobe is None and target is not None
    if tuned:
        nprobe, recall = ivf.nprobe_for_recall(needed, target)
    else:
        nprobe = min(lists.nlist, int(nprobe or default_nprobe(lists.nlist)))
        recall = float(np.mean(needed <= nprobe))
    if stored is not None:
        recall = ivf.probe_recall(*stored, lists, queries, truth, nprobe)
        ceiling = min(lists.nlist, 4 * nprobe)
        while tuned and recall < target and nprobe < ceiling:
            nprobe = min(ceiling, nprobe + max(1, nprobe // 8))
            recall = ivf.probe_recall(*stored, lists, queries, truth, nprobe)
    return nprobe, recall


def _id_hashes(ids) -> np.ndarray:
    return tf.strings.to_hash_bucket_fast(tf.constant(list(ids), tf.string),
                                          _HASH_BUCKETS).numpy()


def _tag_lists(tags, order: np.ndarray):
    """(names sorted, offsets [T + 1], storage positions per tag), CSR over storage positions."""
    where = {}
    for position, row in enumerate(order):
        for tag in tags[row]:
            if not tag or "," in tag:
                raise ValueError(f"tag {tag!r} of row {row}: tags must be non-empty, no commas")
            where.setdefault(tag, []).append(position)
    names = sorted(where)
    rows = [np.asarray(sorted(set(where[n])), np.int64) for n in names]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return names, offsets, (np.concatenate(rows) if rows else np.zeros([0], np.int64))


def _message(*parts) -> tf.Tensor:
    """One string from literal text and tensors (tf.strings.format would quote the strings; no
    quote characters: tf.debugging.Assert prints its data C-escaped, ' as \\')."""
    return tf.strings.join([p if isinstance(p, str) else
                            (p if p.dtype == tf.string else tf.strings.as_string(p))
                            for p in parts])


def _var(value, name, dtype=None) -> tf.Variable:
    return tf.Variable(tf.constant(value, dtype=dtype), trainable=False, name=name)


def _stored_rows(embeddings: np.ndarray, order: np.ndarray, storage: str, chunk: int = 65536):
    """(rows, scale) variables: embeddings[order], quantised, written chunk by chunk into the
    variable (peak memory: the input and the variable, no sorted or tensor copy of the whole)."""
    size, dim = embeddings.shape
    if storage not in ivf.STORAGES:
        raise ValueError(f"storage {storage!r}: choose from {', '.join(ivf.STORAGES)}")
    rows = tf.Variable(tf.zeros([size, dim], storage), trainable=False, name="rows")
    scale = np.empty(size, np.float32)
    for start in range(0, size, chunk):
        values, scale[start:start + chunk] = ivf.quantize(
            embeddings[order[start:start + chunk]], storage)
        rows[start:start + len(values)].assign(values)
    return rows, _var(scale, "scale")


class GalleryIndex(tf.Module):
    """Gallery rows [G, D] (L2-normalised) with ids and metadata, stored sorted by IVF list.

    `lists` reuses IVF lists built for these rows (`ivf.build_lists`: one k-means and one
    assignment for several storages)."""

    def __init__(self, embeddings: np.ndarray, ids, paths=None, captions=None, tags=None,
                 index: str = "auto", storage: str = "float32", nlist: int | None = None,
                 nprobe: int | None = None, max_k: int = DEFAULT_MAX_K, seed: int = 0,
                 header: dict | None = None, lists: ivf.InvertedLists | None = None,
                 target_recall: float | None = DEFAULT_TARGET_RECALL,
                 tuning_queries: np.ndarray | None = None):
        super().__init__(name="gallery_index")
        embeddings = np.asarray(embeddings, np.float32)
        size, dim = embeddings.shape
        ids = [str(i) for i in ids]
        paths = list(paths) if paths is not None else [""] * size
        captions = list(captions) if captions is not None else [""] * size
        tags = [list(t) for t in tags] if tags is not None else [[] for _ in range(size)]
        if not all(len(x) == size for x in (ids, paths, captions, tags)):
            raise ValueError(f"{size} rows but {len(ids)} ids, {len(paths)} paths, "
                             f"{len(captions)} captions, {len(tags)} tag lists")
        if int(max_k) < 1:
            raise ValueError(f"max_k must be >= 1, got {max_k}")
        self.kind, self.storage = choose_kind(index, size), storage
        self.size, self.dim, self.max_k = size, dim, int(max_k)
        if self.kind == "exact":
            lists = ivf.exact_lists(size, dim)
        elif lists is None:
            lists = ivf.build_lists(embeddings, nlist, seed)
        self.nlist = lists.nlist
        order = lists.order
        self.rows, self.scale = _stored_rows(embeddings, order, storage)
        used, self.tuning, kept = tuning_sample(embeddings, tuning_queries, seed)
        self.nprobe, self.expected_recall = 1, 1.0  # exact search
        if self.kind == "ivf":
            self.nprobe, self.expected_recall = choose_nprobe(
                embeddings, lists, nprobe, target_recall, used,
                None if storage == "float32" else (self.rows, self.scale))
        # the queries given, kept (exact indexes too) so that version N+1 chooses on them
        self.tuning_queries = _var(kept, "tuning_queries")
        del embeddings
        self.row_order = _var(order, "row_order")        # storage position -> input position
        self.centroids = _var(lists.centroids, "centroids")
        self.offsets = _var(lists.offsets, "offsets")
        stored = lambda xs: [xs[i] for i in order]  # noqa: E731
        self.ids = _var(stored(ids), "ids", tf.string)
        self.paths = _var(stored(paths), "paths", tf.string)
        self.captions = _var(stored(captions), "captions", tf.string)
        self.tags = _var([",".join(t) for t in stored(tags)], "tags", tf.string)
        names, tag_offsets, tag_rows = _tag_lists(tags, order)
        self.tag_names = _var(names, "tag_names", tf.string)
        self.tag_offsets = _var(tag_offsets, "tag_offsets")
        self.tag_rows = _var(tag_rows, "tag_rows")
        hashes = _id_hashes(stored(ids))
        by_hash = np.argsort(hashes, kind="stable")
        if np.any(np.diff(hashes[by_hash]) == 0):
            repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)[:5]
            raise ValueError(f"gallery ids must be unique: repeated {repeated or 'a 64-bit hash'}")
        self.id_hashes = _var(hashes[by_hash], "id_hashes")
        self.id_hash_rows = _var(by_hash.astype(np.int64), "id_hash_rows")
        self.header = _var(json.dumps(header or {}, sort_keys=True), "header", tf.string)

    # -- checks: InvalidArgumentError naming the value and the allowed range ------------------

    def checked_k(self, k: tf.Tensor) -> tf.Tensor:
        ok = tf.logical_and(k >= 1, k <= self.max_k)
        message = _message("k = ", k, f" is outside the allowed range 1..{self.max_k} "
                           "(--max_k at export)")
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return tf.identity(k)

    def checked_nprobe(self, nprobe: tf.Tensor) -> tf.Tensor:
        """0 (this index's own nprobe) or 1..nlist; the lists scanned per query. Exact search
        has no lists (and no signature that takes nprobe)."""
        if self.kind == "exact":
            return tf.constant(self.nprobe)
        ok = tf.logical_and(nprobe >= 0, nprobe <= self.nlist)
        message = _message("nprobe = ", nprobe, f" is outside the allowed range 0..{self.nlist} "
                           f"(the lists of this index; 0: its own, {self.nprobe})")
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return tf.where(nprobe > 0, nprobe, self.nprobe)

    def checked_embedding(self, embedding: tf.Tensor) -> tf.Tensor:
        width = tf.shape(embedding)[1]
        message = _message("embedding has ", width, " values per row, but this index holds "
                           f"{self.dim}-dimensional embeddings")
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(width, self.dim), [message])]):
            return tf.identity(embedding)

    # -- lookups ------------------------------------------------------------------------------

    def positions_of(self, ids: tf.Tensor):
        """(storage positions int64 [M], found bool [M]) of gallery ids."""
        hashes = tf.strings.to_hash_bucket_fast(ids, _HASH_BUCKETS)
        at = tf.minimum(tf.searchsorted(self.id_hashes, hashes, out_type=tf.int64), self.size - 1)
        positions = tf.gather(ivf.dense_value(self.id_hash_rows), at)
        found = tf.logical_and(tf.equal(tf.gather(ivf.dense_value(self.id_hashes), at), hashes),
                               tf.equal(tf.gather(ivf.dense_value(self.ids), positions), ids))
        return positions, found

    def _tag_mask(self, tag: tf.Tensor) -> tf.Tensor:
        match = tf.cast(tf.where(tf.equal(self.tag_names, tag))[:, 0], tf.int64)
        known = tf.strings.reduce_join(self.tag_names[:20], separator=", ")
        message = tf.strings.regex_replace(
            _message("unknown tag: ", tag, "; the tags of this gallery are: ", known), ": $",
            ": none")
        found = tf.size(match) > 0
        with tf.control_dependencies([tf.debugging.Assert(found, [message])]):
            t = match[0]
        rows = self.tag_rows[self.tag_offsets[t]:self.tag_offsets[t + 1]]
        return self._mask(rows)

    def _mask(self, positions: tf.Tensor) -> tf.Tensor:
        return tf.scatter_nd(positions[:, tf.newaxis], tf.ones_like(positions, tf.bool),
                             [self.size])

    def allowed(self, tag: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        """bool [G]: rows with `tag` ("" = any) among `ids` (empty = any; unknown ids match
        nothing)."""
        everything = tf.ones([self.size], tf.bool)
        by_tag = tf.cond(tf.equal(tag, ""), lambda: everything, lambda: self._tag_mask(tag))

        def by_ids():
            positions, found = self.positions_of(ids)
            return self._mask(tf.boolean_mask(positions, found))
        return tf.logical_and(by_tag, tf.cond(tf.size(ids) > 0, by_ids, lambda: everything))

    # -- search -------------------------------------------------------------------------------

    def _all(self, query, k):
        return ivf.top_k_padded(ivf.all_scores(query, self.rows, self.scale), k)

    def _subset(self, query, k, positions):
        """Exact top-k over the rows at `positions` (sorted: ties keep gallery order)."""
        scores = ivf.all_scores(query, tf.gather(ivf.dense_value(self.rows), positions),
                                tf.gather(ivf.dense_value(self.scale), positions))
        columns, best = ivf.top_k_padded(scores, k)
        found = tf.where(columns >= 0, tf.gather(positions, tf.maximum(columns, 0)), -1)
        return found, best

    def _probe(self, query, k, nprobe, allowed=None):
        return ivf.probe(query, self.rows, self.scale, self.centroids, self.offsets, nprobe, k,
                         allowed)

    def _restricted(self, query, k, nprobe, allowed):
        positions = tf.where(allowed)[:, 0]
        if self.kind == "exact":
            return self._subset(query, k, positions)
        scan_max = tf.cast(SUBSET_SCAN_FACTOR * nprobe, tf.int64) * self.size // self.nlist
        return tf.cond(tf.size(positions, out_type=tf.int64) <= scan_max,
                       lambda: self._subset(query, k, positions),
                       lambda: self._probe(query, k, nprobe, allowed))

    def search(self, query, k, tag, ids, nprobe=0) -> dict:
        """Top-k rows for query [N, D]: ids, scores, paths, captions, tags (comma-joined), each
        [N, k]; past the rows that match a restriction: id "" and score -inf."""
        k = self.checked_k(tf.cast(k, tf.int32))
        nprobe = self.checked_nprobe(tf.cast(nprobe, tf.int32))
        restricted = tf.logical_or(tf.not_equal(tag, ""), tf.size(ids) > 0)
        unrestricted = ((lambda: self._all(query, k)) if self.kind == "exact"
                        else (lambda: self._probe(query, k, nprobe)))
        positions, scores = tf.cond(
            restricted, lambda: self._restricted(query, k, nprobe, self.allowed(tag, ids)),
            unrestricted)
        return {"scores": scores, **self.metadata(positions)}

    def metadata(self, positions: tf.Tensor) -> dict:
        """ids, paths, captions, tags at storage positions; "" where a position is -1."""
        safe, real = tf.maximum(positions, 0), positions >= 0
        return {name: tf.where(real, tf.gather(ivf.dense_value(getattr(self, name)), safe), "")
                for name in ("ids", "paths", "captions", "tags")}

    def embedding_of(self, ids: tf.Tensor) -> tf.Tensor:
        """The stored rows of gallery ids, dequantised: float32 [M, D]."""
        positions, found = self.positions_of(ids)
        unknown = tf.strings.reduce_join(tf.boolean_mask(ids, ~found)[:5], separator=", ")
        message = _message("unknown id: ", unknown, f" (not among the {self.size} items of "
                           "this gallery)")
        with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(found), [message])]):
            positions = tf.identity(positions)
        rows = tf.cast(tf.gather(ivf.dense_value(self.rows), positions), tf.float32)
        return rows * tf.gather(ivf.dense_value(self.scale), positions)[:, tf.newaxis]

    def info(self) -> dict:
        return {"index": tf.constant(self.kind), "storage": tf.constant(self.storage),
                "size": tf.constant(self.size, tf.int64), "dim": tf.constant(self.dim),
                "nlist": tf.constant(self.nlist), "nprobe": tf.constant(self.nprobe),
                "max_k": tf.constant(self.max_k),
                "expected_recall": tf.constant(self.expected_recall, tf.float32)}

    def describe(self) -> str:
        if self.kind == "exact":
            return f"exact search over {self.size} rows ({self.storage})"
        return (f"IVF index over {self.size} rows ({self.storage}): {self.nlist} lists, "
                f"nprobe {self.nprobe} (recall@10 {self.expected_recall:.3f} against exact "
                f"search on {self.tuning})")


# --- reading a saved gallery back ---------------------------------------------------------------

_VARIABLES = ("rows", "scale", "row_order", "ids", "paths", "captions", "tags", "header")
_OPTIONAL = ("tuning_queries",)  # not in indexes exported before it was kept


def read_gallery(saved_model_dir: str) -> dict:
    """A saved index's gallery from its checkpoint (no graph loaded), in its input order:
    embeddings [G, D] float32 (dequantised), ids, paths, captions, tags (lists), header, storage,
    tuning_queries (the queries its nprobe was chosen on, or None). Needs nothing but
    `<version>/variables/`."""
    import os
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    keys = {}
    for key in reader.get_variable_to_shape_map():
        parts = key.split("/")
        if len(parts) >= 3 and parts[-2] == ".ATTRIBUTES" and parts[-3] in _VARIABLES + _OPTIONAL \
                and "index" in parts[-4]:
            keys[parts[-3]] = key
    missing = [v for v in _VARIABLES if v not in keys]
    if missing:
        raise ValueError(f"{saved_model_dir} holds no readable gallery (missing {missing}): "
                         "an index exported before galleries were stored; rebuild it with "
                         "--shards or --gallery")
    get = {name: reader.get_tensor(key) for name, key in keys.items()}
    back = np.argsort(get["row_order"], kind="stable")
    text = lambda name: [b.decode("utf-8") for b in get[name][back]]  # noqa: E731
    storage = {np.dtype(np.int8): "int8", np.dtype(np.float16): "float16"}.get(
        get["rows"].dtype, "float32")
    return {"embeddings": ivf.dequantize(get["rows"][back], get["scale"][back]),
            "ids": text("ids"), "paths": text("paths"), "captions": text("captions"),
            "tags": [t.split(",") if t else [] for t in text("tags")],
            "header": json.loads(get["header"].decode("utf-8") or "{}"), "storage": storage,
            "tuning_queries": get.get("tuning_queries")}
