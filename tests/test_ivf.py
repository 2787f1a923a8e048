"""The gallery index (keras_instance/export/gallery_index.py, ivf.py) without a trained model:
IVF with every list probed = exact search; one probe stays in the query's best list; storage
round trips; restrictions = brute force over the allowed subset on both paths (subset scan,
masked probe); padding; errors from the loaded SavedModel's signatures; the stored gallery read
back from the checkpoint; only allowed ops.

Galleries are clustered (200 tight clusters on the 32-d sphere), so a wrong list, offset or
mapping back to ids gives results far outside the tolerance.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from test_export import ALLOWED_INTERNAL_OPS, graph_ops

from keras_instance.export import gallery_index, ivf, served_indexes

DIM, SIZE, CLUSTERS = 32, 3000, 200
ATOL = 1e-5


def clustered(n, seed=0, clusters=CLUSTERS, noise=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, DIM)).astype(np.float32)
    rows = centers[rng.integers(0, clusters, n)] / np.sqrt(DIM)
    rows += rng.standard_normal((n, DIM)).astype(np.float32) * noise / np.sqrt(DIM)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


GALLERY = clustered(SIZE)
QUERIES = clustered(40, seed=1)
IDS = [f"item{i:05d}" for i in range(SIZE)]
TAGS = [["even" if i % 2 == 0 else "odd"] + (["rare"] if i % 150 == 7 else []) for i in range(SIZE)]


EmbeddingIndex = served_indexes.EmbeddingIndex  # query embeddings in


def brute_force(queries, rows, k, allowed=None):
    scores = queries @ rows.T
    if allowed is not None:
        scores = np.where(allowed[None], scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def decoded(ids):
    return np.vectorize(lambda b: b.decode(), otypes=[object])(np.asarray(ids))


def search(module, k=10, tag="", ids=(), nprobe=0, queries=QUERIES):
    out = module.search_by_embedding_nprobe(tf.constant(queries), tf.constant(k, tf.int32),
                                            tf.constant(tag), tf.constant(list(ids), tf.string),
                                            tf.constant(nprobe, tf.int32))
    return {name: value.numpy() for name, value in out.items()}


def assert_equals_brute_force(out, k, allowed=None, rows=GALLERY, atol=ATOL):
    order, want = brute_force(QUERIES, rows, k, allowed)
    np.testing.assert_allclose(out["scores"], want, rtol=0, atol=atol)
    want_ids = np.where(np.isfinite(want), np.array(IDS, dtype=object)[order], "")
    got = decoded(out["ids"])
    for q, r in zip(*np.nonzero(got != want_ids)):  # only float near-ties may swap
        assert abs(want[q, r] - (QUERIES[q] @ rows[IDS.index(got[q, r])])) < atol, (q, r)


@pytest.fixture(scope="module")
def ivf_module():
    return EmbeddingIndex(GALLERY, IDS, index="ivf", nlist=40, nprobe=2, tags=TAGS,
                          paths=[f"img/{i}.jpg" for i in IDS], captions=[f"c {i}" for i in IDS])


def test_every_list_probed_is_exact_search(ivf_module):
    assert ivf_module.index.kind == "ivf" and ivf_module.index.nlist == 40
    assert_equals_brute_force(search(ivf_module, k=25, nprobe=40), 25)
    exact = EmbeddingIndex(GALLERY, IDS, index="exact")
    assert_equals_brute_force(search(exact, k=25), 25)
    for module in (ivf_module, exact):  # one query (no loop over queries), and none
        one = search(module, k=7, nprobe=40, queries=QUERIES[3:4])
        np.testing.assert_array_equal(one["ids"][0], search(module, k=7, nprobe=40)["ids"][3])
        for tag in ("", "even"):
            empty = search(module if tag == "" else ivf_module, k=5, tag=tag,
                           queries=np.zeros((0, DIM), np.float32))
            assert empty["ids"].shape == empty["scores"].shape == (0, 5)


def test_one_probe_stays_in_the_best_list_and_is_approximate(ivf_module):
    index = ivf_module.index
    centroids, offsets = index.centroids.numpy(), index.offsets.numpy()
    stored = decoded(index.ids.numpy())
    list_of = {i: int(np.searchsorted(offsets, p, side="right") - 1) for p, i in enumerate(stored)}
    out = search(ivf_module, k=10, nprobe=1)
    best = np.argmax(QUERIES @ centroids.T, axis=1)
    for q, row in enumerate(decoded(out["ids"])):
        assert {list_of[i] for i in row if i} == {best[q]}, q
    order, _ = brute_force(QUERIES, GALLERY, 10)
    recall = np.mean([len(set(decoded(out["ids"])[q]) & {IDS[i] for i in order[q]}) / 10
                      for q in range(len(QUERIES))])
    assert 0.3 < recall < 1.0, recall  # one list of 40 finds some, not all, neighbours
    assert np.sum(np.diff(offsets) > 0) > 30  # k-means filled the lists


@pytest.mark.parametrize("storage,atol", [("float16", 2e-3), ("int8", 2e-2)])
def test_storage_round_trip_and_scores(storage, atol):
    module = EmbeddingIndex(GALLERY, IDS, index="exact", storage=storage)
    got = module.embedding_of(tf.constant(IDS[::7]))["embedding"].numpy()
    np.testing.assert_allclose(got, GALLERY[::7], rtol=0, atol=atol / 4)
    assert module.index.rows.dtype == tf.as_dtype(storage)
    out = search(module, k=10)
    order, want = brute_force(QUERIES, GALLERY, 10)
    np.testing.assert_allclose(out["scores"], want, rtol=0, atol=atol)
    recall = np.mean([len(set(decoded(out["ids"])[q]) & {IDS[i] for i in order[q]}) / 10
                      for q in range(len(QUERIES))])
    assert recall >= 0.9, recall


EVEN = np.array([i % 2 == 0 for i in range(SIZE)])
CHOSEN = IDS[5:2000:3]


def test_restrictions_equal_brute_force_over_the_subset(ivf_module):
    rare = np.array(["rare" in t for t in TAGS])
    listed = np.isin(IDS, CHOSEN)
    # at most 8 x nprobe x mean list length (75) allowed rows: scanned exactly, whatever nprobe
    out = search(ivf_module, k=30, tag="rare", nprobe=1)           # 20 rows
    assert_equals_brute_force(out, 30, rare)
    assert (decoded(out["ids"])[:, 20:] == "").all() and np.isneginf(out["scores"][:, 20:]).all()
    assert_equals_brute_force(search(ivf_module, k=10, tag="even", nprobe=3), 10, EVEN)  # 1500
    assert_equals_brute_force(search(ivf_module, k=10, ids=CHOSEN, nprobe=2), 10, listed)
    out = search(ivf_module, k=10, ids=["nope", IDS[3], IDS[9]], nprobe=1)  # unknown: ignored
    assert_equals_brute_force(out, 10, np.isin(IDS, [IDS[3], IDS[9]]))
    assert_equals_brute_force(search(ivf_module, k=10, tag="even", ids=CHOSEN, nprobe=1), 10,
                              listed & EVEN)
    meta = search(ivf_module, k=3, ids=[IDS[11]])
    assert decoded(meta["paths"])[0, 0] == f"img/{IDS[11]}.jpg"
    assert decoded(meta["captions"])[0, 0] == f"c {IDS[11]}"
    assert decoded(meta["tags"])[0, 0] == "odd" and decoded(meta["tags"])[0, 1] == ""


def test_large_restrictions_probe_lists_and_drop_the_rest(ivf_module, monkeypatch):
    # 1500 even rows > 8 x 2 probes x 75: lists probed, odd rows dropped
    out = search(ivf_module, k=10, tag="even", nprobe=2)
    got = decoded(out["ids"])
    assert all(int(i[4:]) % 2 == 0 for i in got.ravel() if i)
    order, _ = brute_force(QUERIES, GALLERY, 10, EVEN)
    assert (got != np.array(IDS, dtype=object)[order]).any(), "2 of 40 lists: not exact"
    # the probing path itself, every list probed: brute force over the subset
    monkeypatch.setattr(gallery_index, "SUBSET_SCAN_FACTOR", 0)
    probing = EmbeddingIndex(GALLERY, IDS, index="ivf", nlist=40, nprobe=2, tags=TAGS)
    assert_equals_brute_force(search(probing, k=10, tag="even", nprobe=40), 10, EVEN)
    listed = np.isin(IDS, CHOSEN)
    assert_equals_brute_force(search(probing, k=10, tag="even", ids=CHOSEN, nprobe=40), 10,
                              listed & EVEN)
    out = search(probing, k=30, tag="rare", nprobe=1)  # 20 rows, few in one list: padded
    found = decoded(out["ids"]) != ""
    assert (found.sum(axis=1) < 20).all() and np.isneginf(out["scores"][~found]).all()


def test_gallery_smaller_than_k_is_padded():
    module = EmbeddingIndex(GALLERY[:4], IDS[:4], k=10, index="exact")
    assert module.k == 4
    out = search(module, k=7)
    assert (decoded(out["ids"])[:, 4:] == "").all() and np.isneginf(out["scores"][:, 4:]).all()
    assert_equals_brute_force({k: v[:, :4] for k, v in out.items()}, 4, rows=GALLERY[:4])


@pytest.fixture(scope="module")
def saved(ivf_module, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ivf") / "1")
    tf.saved_model.save(ivf_module, folder, signatures=ivf_module.signatures())
    return folder


def test_errors_from_the_loaded_signatures(saved):
    signatures = tf.saved_model.load(saved).signatures
    by_embedding, embedding_of = signatures["search_by_embedding"], signatures["embedding_of"]
    query = tf.constant(QUERIES[:2])
    args = dict(k=tf.constant(5), tag=tf.constant(""), ids=tf.constant([], tf.string))
    assert by_embedding(embedding=query, **args)["ids"].shape == (2, 5)
    for k in (0, -3, 101):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"k = {k} is outside the allowed range 1..100"):
            by_embedding(embedding=query, **{**args, "k": tf.constant(k)})
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="embedding has 31 values per row, but this index holds "
                             "32-dimensional embeddings"):
        by_embedding(embedding=query[:, :31], **args)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="unknown tag: blue; the tags of this gallery are: even, odd, rare"):
        by_embedding(embedding=query, **{**args, "tag": tf.constant("blue")})
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"unknown id: ghost, spook \(not among the 3000 items of "
                             r"this gallery\)"):
        embedding_of(ids=tf.constant([IDS[0], "ghost", "spook"]))
    rows = embedding_of(ids=tf.constant([IDS[42], IDS[7]]))["embedding"].numpy()
    np.testing.assert_array_equal(rows, GALLERY[[42, 7]])
    info = {k: v.numpy() for k, v in signatures["index_info"]().items()}
    assert info["index"] == b"ivf" and info["nlist"] == 40 and info["nprobe"] == 2
    assert info["size"] == SIZE and info["dim"] == DIM and info["max_k"] == 100
    assert 0 < info["expected_recall"] < 1  # 2 of 40 lists: measured at build time
    assert set(signatures) == {"serving_default", "search", "search_by_embedding",
                               "embedding_of", "index_info", "search_nprobe",
                               "search_by_embedding_nprobe"}
    # per-request nprobe (the _nprobe twins): every list is exact search; 0 is the index's own
    twin = signatures["search_by_embedding_nprobe"]
    every = twin(embedding=query, **args, nprobe=tf.constant(40))
    want = brute_force(QUERIES[:2], GALLERY, 5)[1]
    np.testing.assert_allclose(every["scores"].numpy(), want, atol=ATOL)
    own = twin(embedding=query, **args, nprobe=tf.constant(0))
    np.testing.assert_array_equal(own["ids"].numpy(), by_embedding(embedding=query, **args)["ids"])
    for nprobe in (-1, 41):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"nprobe = {nprobe} is outside the allowed range 0..40 \(the "
                                 r"lists of this index; 0: its own, 2\)"):
            twin(embedding=query, **args, nprobe=tf.constant(nprobe))
    # the text/image twin forwards nprobe too (here the query is an embedding as well)
    search = signatures["search_nprobe"]
    (query_input,) = set(search.structured_input_signature[1]) - {*args, "nprobe"}
    every = search(**{query_input: query}, **args, nprobe=tf.constant(40))
    np.testing.assert_allclose(every["scores"].numpy(), want, atol=ATOL)
    assert not np.allclose(search(**{query_input: query}, **args, nprobe=tf.constant(1))[
        "scores"].numpy(), want, atol=ATOL)  # one list of 40 misses some of the true top 5
    with pytest.raises(tf.errors.InvalidArgumentError, match="nprobe = 41 is outside"):
        search(**{query_input: query}, **args, nprobe=tf.constant(41))


def test_saved_gallery_reads_back_and_lives_in_variables(saved):
    back = gallery_index.read_gallery(saved)
    np.testing.assert_array_equal(back["embeddings"], GALLERY)
    assert back["ids"] == IDS and back["tags"] == TAGS and back["storage"] == "float32"
    assert back["paths"][3] == f"img/{IDS[3]}.jpg" and back["captions"][3] == f"c {IDS[3]}"
    # rows, ids and metadata are variables (a constant would meet protobuf's 2 GB limit)
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    library = proto.meta_graphs[0].graph_def.library
    constants = [n.attr["value"].tensor.ByteSize() for f in library.function for n in f.node_def
                 if n.op == "Const"]
    assert max(constants) < 1024 < GALLERY.nbytes, max(constants)


def test_int8_gallery_reads_back_to_the_same_rows(tmp_path):
    module = EmbeddingIndex(GALLERY[:500], IDS[:500], index="exact", storage="int8")
    tf.saved_model.save(module, str(tmp_path / "1"), signatures=module.signatures())
    back = gallery_index.read_gallery(str(tmp_path / "1"))
    assert back["storage"] == "int8"
    again, scale = ivf.quantize(back["embeddings"], "int8")
    np.testing.assert_array_equal(again, module.index.rows.numpy())  # re-quantising is lossless
    np.testing.assert_allclose(scale, module.index.scale.numpy(), rtol=1e-6)


def test_auto_index_and_nlist(monkeypatch):
    assert gallery_index.choose_kind("auto", gallery_index.EXACT_BELOW - 1) == "exact"
    assert gallery_index.choose_kind("auto", gallery_index.EXACT_BELOW) == "ivf"
    assert ivf.default_nlist(1_000_000) == 4000 and ivf.default_nlist(3) == 3
    monkeypatch.setattr(gallery_index, "EXACT_BELOW", 1000)
    module = EmbeddingIndex(GALLERY, IDS)
    assert module.index.kind == "ivf" and module.index.nlist == ivf.default_nlist(SIZE)
    assert "IVF index over 3000 rows (float32): 219 lists" in module.index.describe()
    with pytest.raises(ValueError, match="unique"):
        EmbeddingIndex(GALLERY[:3], ["a", "b", "a"])
    with pytest.raises(ValueError, match="storage 'int4'"):
        EmbeddingIndex(GALLERY[:3], IDS[:3], storage="int4")


def test_only_core_ops(saved):
    core = set(dir(tf.raw_ops))
    ops = graph_ops(saved)
    assert {"MatMul", "TopKV2", "StringToHashBucketFast", "LowerBound", "RaggedRange"} <= ops
    outside = sorted(op for op in ops if op not in core | ALLOWED_INTERNAL_OPS)
    assert not outside, f"the index uses ops outside core TF: {outside}"
    # a gather on a variable (ResourceGather) switches it to copy-on-read: every later dense read
    # (exact search's matmul over the rows) would copy the whole gallery
    assert "ResourceGather" not in ops and "ReadVariableOp" in ops


def test_probes_needed_predicts_the_recall_of_every_nprobe():
    """recall@10 of the served probe at each nprobe = the share of true neighbours whose list
    ranks within nprobe (ivf.probes_needed), and nprobe_for_recall picks the smallest that
    reaches a target."""
    lists = ivf.build_lists(GALLERY, 40, seed=0)
    needed = ivf.probes_needed(GALLERY, lists, QUERIES, k=10)
    stored = [tf.constant(x) for x in (*ivf.quantize(GALLERY[lists.order], "float32"),
                                        lists.centroids, lists.offsets)]
    truth = brute_force(QUERIES, GALLERY, 10)[0]
    recalls = []
    for nprobe in (1, 2, 3, 5, 40):
        found = lists.order[ivf.probe(tf.constant(QUERIES), *stored, nprobe, 10)[0].numpy()]
        recalls.append(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
        assert recalls[-1] == pytest.approx(np.mean(needed <= nprobe), abs=1e-12), nprobe
    assert np.all(np.diff(recalls) > 0) and recalls[-1] == 1.0  # every probe count matters here
    nprobe, reached = ivf.nprobe_for_recall(needed, 0.9)
    assert reached >= 0.9 > np.mean(needed <= nprobe - 1)
    assert ivf.nprobe_for_recall(needed, 1.0) == (needed.max(), 1.0)


def test_nprobe_is_chosen_for_the_target_recall_on_the_queries_given():
    lists = ivf.build_lists(GALLERY, 40, seed=0)
    needed = ivf.probes_needed(GALLERY, lists, QUERIES, k=10)
    want, recall = ivf.nprobe_for_recall(needed, 0.9)
    index = EmbeddingIndex(GALLERY, IDS, index="ivf", lists=lists, target_recall=0.9,
                           tuning_queries=QUERIES).index
    assert (index.nprobe, index.expected_recall) == (want, recall) and 1 < want < 40
    assert "recall@10 0.9" in index.describe() and "40 queries given" in index.describe()
    np.testing.assert_array_equal(index.tuning_queries.numpy(), QUERIES)
    # without queries, gallery rows stand in (each finds itself: an easier recall)
    rows = EmbeddingIndex(GALLERY, IDS, index="ivf", lists=lists, target_recall=0.9).index
    assert "500 gallery rows as queries" in rows.describe() and rows.nprobe <= want
    assert rows.tuning_queries.shape == (0, DIM)
    fixed = EmbeddingIndex(GALLERY, IDS, index="ivf", lists=lists, nprobe=40).index
    assert (fixed.nprobe, fixed.expected_recall) == (40, 1.0)


def served_recall(module, queries, gallery, nprobe=0):
    """recall@10 of the index's own search (nprobe 0: the index's) against exact float32."""
    found = decoded(search(module, nprobe=nprobe, queries=queries)["ids"])
    truth = brute_force(queries, gallery, 10)[0]
    return np.mean([len(set(f) & {IDS[t] for t in row}) / 10 for f, row in zip(found, truth)])


@pytest.mark.parametrize("storage", ["int8", "float16"])
def test_quantised_rows_reach_the_target_recall_they_report(storage):
    """float16 / int8 rows move scores, and so some true neighbours out of the top 10: the
    index reports the recall of its rows as stored and probes more lists until it reaches the
    target (tight clusters: int8 loses recall at float32's choice of nprobe here)."""
    gallery, queries = clustered(SIZE, noise=0.05), clustered(40, seed=1, noise=0.05)
    lists = ivf.build_lists(gallery, 40, seed=0)
    float32_choice = ivf.nprobe_for_recall(ivf.probes_needed(gallery, lists, queries), 0.9)[0]
    module = EmbeddingIndex(gallery, IDS, index="ivf", lists=lists, storage=storage,
                            target_recall=0.9, tuning_queries=queries)
    index = module.index
    assert index.expected_recall == pytest.approx(served_recall(module, queries, gallery),
                                                  abs=1e-9)
    assert index.expected_recall >= 0.9
    if storage == "int8":
        assert index.nprobe > float32_choice  # measured: 13 against 11
        assert served_recall(module, queries, gallery, index.nprobe - 1) < 0.9
    else:
        assert index.nprobe == float32_choice


def test_the_queries_given_are_kept_by_exact_indexes_too_and_a_target_checked():
    """An exact version N keeps the tuning queries, so an IVF version N+1 grown from it chooses
    nprobe on them, not on gallery rows (an easier recall)."""
    exact = EmbeddingIndex(GALLERY, IDS, index="exact", tuning_queries=QUERIES).index
    np.testing.assert_array_equal(exact.tuning_queries.numpy(), QUERIES)
    with pytest.raises(ValueError, match=r"target recall must be in \(0, 1\], got 0"):
        EmbeddingIndex(GALLERY, IDS, index="ivf", nlist=40, target_recall=0)


# --- the list scan itself (ivf.probe) against NumPy, on scores that are exact in float32 --------

def exact_valued(n, seed):
    """Rows of multiples of 1/8 in [-1/4, 1/4]: every dot product is exact in float32 whatever the
    summation order, so scores equal NumPy's bit for bit and ties are real (and frequent)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-2, 3, (n, DIM)) / 8).astype(np.float32)


def numpy_probe(queries, values, scale, centroids, offsets, nprobe, k, allowed=None):
    """The rows of each query's nprobe best lists, scored in NumPy, top k, ties to the lower
    storage position; -1 / -inf past the candidates."""
    found = np.full((len(queries), k), -1, np.int64)
    best = np.full((len(queries), k), -np.inf, np.float32)
    for q, query in enumerate(queries):
        lists = np.argsort(-(centroids @ query), kind="stable")[:nprobe]
        positions = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in lists])
        positions = np.sort(positions)
        if allowed is not None:
            positions = positions[allowed[positions]]
        scores = (values[positions].astype(np.float32) @ query).astype(np.float32)
        if values.dtype == np.int8:
            scores = scores * scale[positions]
        order = np.argsort(-scores, kind="stable")[:k]
        found[q, :len(order)], best[q, :len(order)] = positions[order], scores[order]
    return found, best


SCAN_ROWS = exact_valued(1003, seed=2)
SCAN_QUERIES = exact_valued(9, seed=3)
SCAN_LISTS = ivf.build_lists(SCAN_ROWS, 25, seed=0)


@pytest.mark.parametrize("storage", ivf.STORAGES)
@pytest.mark.parametrize("chunk, scan", [(None, "query"), (7, "query"), (None, "list")])
def test_probe_equals_a_numpy_scan_of_the_probed_lists(storage, chunk, scan):
    """Both scans: by query (one chunk per query, or 7-row chunks across list borders) and by
    list (each probed list once for all its queries)."""
    values, scale = ivf.quantize(SCAN_ROWS[SCAN_LISTS.order], storage)
    centroids, offsets = SCAN_LISTS.centroids, SCAN_LISTS.offsets
    rng = np.random.default_rng(4)
    allowed = rng.random(len(values)) < 0.3
    few = np.zeros(len(values), bool)
    few[rng.choice(len(values), 6, replace=False)] = True       # fewer than k anywhere: padded
    stored = [tf.constant(x) for x in (values, scale, centroids, offsets)]
    specs = [tf.TensorSpec([None, DIM]), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)]
    probe = tf.function(lambda q, nprobe, k: ivf.probe(q, *stored, nprobe, k, chunk=chunk,
                                                       scan=scan),
                        input_signature=specs)
    masked = tf.function(lambda q, nprobe, k, mask: ivf.probe(q, *stored, nprobe, k, mask,
                                                              chunk=chunk, scan=scan),
                         input_signature=specs + [tf.TensorSpec([len(values)], tf.bool)])
    for nprobe, k, mask in ((1, 60, None), (3, 10, None), (25, 10, None), (4, 10, allowed),
                            (25, 10, few), (2, 100, few)):
        for queries in (SCAN_QUERIES, SCAN_QUERIES[4:5]):  # a batch and a single query
            args = (tf.constant(queries), tf.constant(nprobe), tf.constant(k))
            got = probe(*args) if mask is None else masked(*args, tf.constant(mask))
            want = numpy_probe(queries, values, scale, centroids, offsets, nprobe, k, mask)
            np.testing.assert_array_equal(got[1].numpy(), want[1])
            np.testing.assert_array_equal(got[0].numpy(), want[0])
    assert (want[0] == -1).any() and len(set(want[1][0][:10])) < 10  # padding and ties were hit
    empty = probe(tf.zeros([0, DIM]), tf.constant(3), tf.constant(10))
    assert empty[0].shape == empty[1].shape == (0, 10)
    # an empty list (k-means can leave one): the query whose only probe it is finds nothing,
    # after queries that find rows, in one batch
    away = -centroids.mean(axis=0, keepdims=True)
    away /= np.linalg.norm(away)
    with_empty = [tf.constant(x) for x in (values, scale, np.concatenate([centroids, away]),
                                           np.concatenate([offsets, offsets[-1:]]))]
    queries = np.concatenate([SCAN_QUERIES[:2], away]).astype(np.float32)
    found, best = ivf.probe(tf.constant(queries), *with_empty, 1, 5, chunk=chunk,
                            scan=scan)
    assert (found.numpy()[2] == -1).all() and np.isneginf(best.numpy()[2]).all()
    assert (found.numpy()[:2] >= 0).all()


def test_probe_names_the_scans_it_knows():
    stored = [tf.constant(x) for x in (SCAN_ROWS[SCAN_LISTS.order], np.ones(len(SCAN_ROWS),
                                       np.float32), SCAN_LISTS.centroids, SCAN_LISTS.offsets)]
    with pytest.raises(ValueError, match="scan must be one of query, list or None, got 'block'"):
        ivf.probe(tf.constant(SCAN_QUERIES), *stored, 3, 10, scan="block")
