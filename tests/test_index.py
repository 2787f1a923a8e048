"""Retrieval indexes (`keras_instance.cli.index`): served top-k = in-process top-k over evaluation's
embeddings, models.config, tie order, folder galleries, the search signatures (k, tag, id
allow-list, metadata, errors of the loaded model), an IVF index from embedding shards and its
version N+1 (added shards, removed ids, nothing encoded, N untouched), and end to end through the
stand-in server and the real gRPC client on loopback.

The session's tiny trained run (conftest.trained_run), indexed by the program into its exports.
"""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers NormalizeUTF8 / CaseFoldUTF8 for loading)
from conftest import run_program
from google.protobuf import text_format
from test_export import ALLOWED_INTERNAL_OPS, ALLOWED_TF_TEXT_OPS, graph_ops

from keras_instance.export import (
    galleries,
    gallery_index,
    layout,
    publish,
    served_encoders,
    served_indexes,
)
from keras_instance.retrieval import embedding_shards, embeddings
from keras_instance.text import tokenizer
from serving import client  # noqa: E402
from serving.standin_process import StandinProcess  # noqa: E402

K = 5
ATOL = 1e-5
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
SERVER_START_S = 240


@pytest.fixture(scope="module")
def indexed(trained_run, tmp_path_factory):
    """The session's run, exported (version 1) and indexed by `index --gallery=split:test
    --k=5` into a folder of this module's.

    Also the in-process reference: evaluation's embeddings of the test images and captions.
    """
    root = tmp_path_factory.mktemp("index")
    config, dual, vocab = trained_run["config"], trained_run["dual"], trained_run["vocab"]
    exports = str(root / "exports")
    shutil.copytree(trained_run["exports"], exports)
    out = run_program("keras_instance.cli.index", f"--workdir={config.workdir}",
                      f"--export_dir={exports}", "--gallery=split:test", f"--k={K}")
    assert "indexed as version 1" in out.stdout, out.stdout
    records, test = trained_run["records"], trained_run["test"]
    paths = [r.image_path for r in test]
    captions = [c for r in test for c in r.captions]
    image_emb = embeddings.embed_images(dual.image_encoder(), paths, config.image.image_size,
                                        config.test.test_flip_sum, config.test.eval_batch_size)
    tokens = tokenizer.encode_captions(captions, vocab, config.data.max_length)
    caption_emb = embeddings.embed_token_ids(dual.text_encoder, tokens, config.test.test_shift_sum)
    return dict(root=root, config=config, dual=dual, vocab=vocab, records=records,
                exports=exports, test=test, paths=paths, image_ids=[r.image_id for r in test],
                captions=captions, caption_ids=[f"{r.image_id}#{n}" for r in test
                                                for n in range(len(r.captions))],
                caption_owner=np.array([i for i, r in enumerate(test) for _ in r.captions]),
                image_emb=image_emb, caption_emb=caption_emb)


def reference_top_k(query_emb, gallery_emb, k):
    """NumPy top-k under retrieval.py's rule: score descending, lower gallery index first."""
    scores = query_emb @ gallery_emb.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1), scores


def assert_same_top_k(got_ids, got_scores, gallery_ids, query_emb, gallery_emb, k):
    """Ids equal and scores within ATOL; an id may differ only where two scores are within ATOL
    of each other (a float near-tie), and then the served id must hold that score in-process."""
    order, want_scores, scores = reference_top_k(query_emb, gallery_emb, k)
    got_ids = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(np.asarray(got_ids))
    assert got_ids.shape == order.shape and np.asarray(got_scores).shape == order.shape
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=ATOL)
    want_ids = np.array(gallery_ids, dtype=object)[order]
    index = {g: i for i, g in enumerate(gallery_ids)}
    for q, r in zip(*np.nonzero(got_ids != want_ids)):
        held = scores[q, index[got_ids[q, r]]]
        assert abs(held - want_scores[q, r]) < ATOL, (q, r, got_ids[q], want_ids[q])
    return order


def load_index(exports, name, version=1, signature="serving_default"):
    return tf.saved_model.load(os.path.join(exports, name, str(version))) \
        .signatures[signature]


# ----------------------------------------------------------------------------- in process

def test_index_savedmodels_equal_in_process_top_k(indexed):
    d = indexed
    for name in publish.INDEX_MODELS:
        version = os.path.join(d["exports"], name, "1")
        assert os.path.exists(os.path.join(version, "saved_model.pb"))
        assert os.path.exists(os.path.join(version, layout.WARMUP_FILE))
    t2i = load_index(d["exports"], "text_to_image")
    out = t2i(sentences=tf.constant(d["captions"]))
    assert set(out) == {"ids", "scores"} and out["scores"].dtype == tf.float32
    assert out["ids"].shape == (len(d["captions"]), K)
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), d["image_ids"],
                      d["caption_emb"], d["image_emb"], K)

    i2t = load_index(d["exports"], "image_to_text")
    images = [open(p, "rb").read() for p in d["paths"]]
    out = i2t(images=tf.constant(images))
    assert set(out) == {"ids", "captions", "scores"}
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), d["caption_ids"],
                      d["image_emb"], d["caption_emb"], K)
    by_id = dict(zip(d["caption_ids"], d["captions"]))
    got_ids = out["ids"].numpy()
    got_captions = out["captions"].numpy()
    for q in range(len(images)):
        for r in range(K):  # each caption text belongs to the id beside it
            assert got_captions[q, r].decode("utf-8") == by_id[got_ids[q, r].decode("utf-8")]


def test_models_config_lists_all_four(indexed):
    from tensorflow_serving.config import model_server_config_pb2
    with open(os.path.join(indexed["exports"], "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert set(entries) == {"image_encoder", "text_encoder", "text_to_image", "image_to_text"}
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}" and entry.model_platform == "tensorflow"


def test_index_ops_are_core_or_tf_serving_tf_text(indexed):
    """Every function of the index graphs (serving_default, search, search_by_embedding,
    embedding_of, index_info) is checked; an IVF index's below (from shards)."""
    core = set(dir(tf.raw_ops))
    for name in publish.INDEX_MODELS:
        ops = graph_ops(os.path.join(indexed["exports"], name, "1"))
        assert {"MatMul", "TopKV2", "LowerBound", "StringToHashBucketFast"} <= ops
        outside = sorted(op for op in ops
                         if op not in core | ALLOWED_INTERNAL_OPS | ALLOWED_TF_TEXT_OPS)
        assert not outside, f"{name} uses ops outside the allow-list: {outside}"


def test_ties_lower_gallery_index_first(indexed):
    """Exact ties (one-hot gallery rows: a score is one query component, bit for bit) come out
    in gallery order, as retrieval.py ranks them; tf.math.top_k documents this rule."""
    d = indexed
    text_module = served_encoders.text_module(d["config"], d["dual"], d["vocab"])
    dim = text_module.embed_dim
    rows = [0, 1, 0, 2, 1, 0, 3, 2]
    gallery = np.eye(dim, dtype=np.float32)[rows]
    ids = [f"g{i}" for i in range(len(rows))]
    module = served_indexes.TextToImageIndex(text_module, gallery, ids, k=100)
    assert module.k == len(rows)  # k = min(k, gallery size)
    sentences = d["captions"][:6]
    out = module.serve(tf.constant(sentences))
    query = text_module.serve(tf.constant(sentences))["embedding"].numpy()
    scores = query[:, rows]
    want = np.array(ids, dtype=object)[np.argsort(-scores, axis=1, kind="stable")]
    got = np.vectorize(lambda b: b.decode(), otypes=[object])(out["ids"].numpy())
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out["scores"].numpy(), np.sort(scores, axis=1)[:, ::-1])
    assert (np.diff(out["scores"].numpy(), axis=1) == 0).any(), "the gallery must hold ties"


def test_folder_gallery_and_arguments(indexed, tmp_path):
    d = indexed
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(d["paths"][0], folder / "b.png")
    shutil.copy(d["paths"][1], folder / "sub" / "a.png")
    shutil.copy(d["paths"][2], folder / "A.PNG")
    (folder / "x.jpg").write_bytes(layout.demo_jpeg(40, seed=7))
    (folder / "notes.txt").write_text("not an image")
    ids, paths = galleries.folder_images(str(folder))
    assert ids == ["A.PNG", "b.png", "sub/a.png", "x.jpg"]

    spec = galleries.GallerySpec.parse(f"folder:{folder}")
    exports = str(tmp_path / "exports")
    args = (d["config"], d["dual"], d["vocab"], exports, spec, d["records"])
    with pytest.raises(ValueError, match="caption_split"):
        publish.build_index(*args)
    result = publish.build_index(*args, k=50, caption_split="test", log=lambda s: None)
    assert result["version"] == 1 and result["k_text_to_image"] == 4
    assert result["k_image_to_text"] == min(50, len(d["captions"]))
    with pytest.raises(FileExistsError):
        publish.build_index(*args, caption_split="test", version=1)
    assert sorted(os.listdir(os.path.join(exports, "text_to_image"))) == ["1"], "no temp left"

    t2i = load_index(exports, "text_to_image")
    out = t2i(sentences=tf.constant(d["captions"][:10]))
    folder_emb = embeddings.embed_images(d["dual"].image_encoder(), paths,
                                         d["config"].image.image_size,
                                         d["config"].test.test_flip_sum)
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), ids, d["caption_emb"][:10],
                      folder_emb, 4)
    i2t = load_index(exports, "image_to_text")
    out = i2t(images=tf.constant([open(p, "rb").read() for p in paths]))
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), d["caption_ids"], folder_emb,
                      d["caption_emb"], min(50, len(d["captions"])))

    for bad in ("test", "split:", "shelf:test", f"folder:{tmp_path / 'missing'}"):
        with pytest.raises((ValueError, FileNotFoundError)):
            galleries.GallerySpec.parse(bad)
    with pytest.raises(ValueError, match="k must be"):
        publish.build_index(*args, k=0, caption_split="test")


def test_search_signatures_of_the_split_index(indexed):
    """search = serving_default at the same k, plus metadata; search_by_embedding with the
    sentences' embeddings = search; an id allow-list; errors of the loaded signatures."""
    d = indexed
    path = os.path.join(d["exports"], "text_to_image", "1")
    signatures = tf.saved_model.load(path).signatures
    assert {"search", "search_by_embedding", "embedding_of", "index_info"} <= set(signatures)
    sentences = tf.constant(d["captions"][:8])
    none = dict(tag=tf.constant(""), ids=tf.constant([], tf.string))
    top = signatures["serving_default"](sentences=sentences)
    out = signatures["search"](sentences=sentences, k=tf.constant(K), **none)
    assert set(out) == {"ids", "scores", "paths", "captions", "tags"}
    np.testing.assert_array_equal(out["ids"].numpy(), top["ids"].numpy())
    np.testing.assert_allclose(out["scores"].numpy(), top["scores"].numpy(), rtol=0, atol=ATOL)
    records = {r.image_id: r for r in d["test"]}
    for q in range(8):
        for r in range(K):
            record = records[out["ids"].numpy()[q, r].decode()]
            assert out["captions"].numpy()[q, r].decode() == " | ".join(record.captions)
            assert out["paths"].numpy()[q, r].decode() == os.path.relpath(
                record.image_path, d["config"].data.data_dir)
    by_embedding = signatures["search_by_embedding"](
        embedding=tf.constant(d["caption_emb"][:8]), k=tf.constant(len(d["image_ids"]) + 3),
        **none)
    got = by_embedding["ids"].numpy()
    assert (got[:, -3:] == b"").all() and np.isneginf(by_embedding["scores"].numpy()[:, -3:]).all()
    assert_same_top_k(got[:, :K], by_embedding["scores"].numpy()[:, :K], d["image_ids"],
                      d["caption_emb"][:8], d["image_emb"], K)
    allowed = d["image_ids"][1::3]
    out = signatures["search_by_embedding"](embedding=tf.constant(d["caption_emb"][:8]),
                                            k=tf.constant(len(allowed)), tag=tf.constant(""),
                                            ids=tf.constant(allowed))
    rows = [d["image_ids"].index(i) for i in allowed]
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), allowed,
                      d["caption_emb"][:8], d["image_emb"][rows], len(allowed))
    np.testing.assert_allclose(signatures["embedding_of"](ids=tf.constant(allowed))[
        "embedding"].numpy(), d["image_emb"][rows], rtol=0, atol=ATOL)
    info = signatures["index_info"]()
    assert info["index"].numpy() == b"exact" and info["size"].numpy() == len(d["image_ids"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="k = 101 is outside the allowed "
                                                             "range 1..100"):
        signatures["search"](sentences=sentences, k=tf.constant(101), **none)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown tag: red; the tags of "
                                                             "this gallery are: none"):
        signatures["search"](sentences=sentences, k=tf.constant(3), tag=tf.constant("red"),
                             ids=none["ids"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="embedding has 3 values per row"):
        signatures["search_by_embedding"](embedding=tf.zeros([1, 3]), k=tf.constant(3), **none)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown id: nobody"):
        signatures["embedding_of"](ids=tf.constant(["nobody"]))

    i2t = tf.saved_model.load(os.path.join(d["exports"], "image_to_text", "1")).signatures
    images = tf.constant([open(p, "rb").read() for p in d["paths"][:2]])
    out = i2t["search"](images=images, k=tf.constant(4), **none)
    assert_same_top_k(out["ids"].numpy(), out["scores"].numpy(), d["caption_ids"],
                      d["image_emb"][:2], d["caption_emb"], 4)
    by_id = dict(zip(d["caption_ids"], d["captions"]))
    for q in range(2):
        for r in range(4):
            caption_id = out["ids"].numpy()[q, r].decode()
            assert out["captions"].numpy()[q, r].decode() == by_id[caption_id]
            owner = records[caption_id.split("#")[0]]
            assert out["paths"].numpy()[q, r].decode() == os.path.relpath(
                owner.image_path, d["config"].data.data_dir)


def shard_table(embeddings, ids, kind, tags=None, fingerprint="run-1"):
    return embedding_shards.EmbeddingTable(
        np.asarray(embeddings, np.float32), list(ids), [f"photos/{i}.png" for i in ids],
        [f"caption of {i}" for i in ids], tags or [[] for _ in ids], kind,
        {"feature": "embedding", "encoder": {"fingerprint": fingerprint, "description": "t"},
         "source": {"description": "test"}})


def files_of(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def test_index_from_shards_then_add_and_remove_encoding_nothing(indexed, tmp_path, monkeypatch):
    d = indexed
    config = d["config"]
    tags = [["test", "even" if i % 2 == 0 else "odd"] for i in range(len(d["image_ids"]))]
    images = embedding_shards.write_table(str(tmp_path / "images"), shard_table(
        d["image_emb"], d["image_ids"], "image", tags), chunk_size=5)
    captions = embedding_shards.write_table(str(tmp_path / "captions"), shard_table(
        d["caption_emb"], d["caption_ids"], "caption"), chunk_size=16)
    exports = str(tmp_path / "exports")
    out = run_program("keras_instance.cli.index", f"--workdir={config.workdir}",
                      f"--export_dir={exports}", f"--shards={images},{captions}", f"--k={K}",
                      "--max_k=20", "--index=ivf", "--nlist=3", "--nprobe=3")
    assert "indexed as version 1" in out.stdout, out.stdout
    assert "text_to_image: IVF index over 12 rows (float32): 3 lists, nprobe 3" in out.stdout
    # built together, each index measures its recall on the other's rows (every list: exact)
    assert (f"nprobe 3 (recall@10 1.000 against exact search on {len(d['caption_ids'])} "
            "queries given)") in out.stdout
    core = set(dir(tf.raw_ops))
    for name in publish.INDEX_MODELS:
        ops = graph_ops(os.path.join(exports, name, "1"))
        assert "RaggedRange" in ops
        outside = sorted(op for op in ops
                         if op not in core | ALLOWED_INTERNAL_OPS | ALLOWED_TF_TEXT_OPS)
        assert not outside, f"{name} uses ops outside the allow-list: {outside}"
    t2i = tf.saved_model.load(os.path.join(exports, "text_to_image", "1")).signatures
    top = t2i["serving_default"](sentences=tf.constant(d["captions"]))
    assert_same_top_k(top["ids"].numpy(), top["scores"].numpy(), d["image_ids"],
                      d["caption_emb"], d["image_emb"], K)
    even = t2i["search"](sentences=tf.constant(d["captions"][:4]), k=tf.constant(20),
                         tag=tf.constant("even"), ids=tf.constant([], tf.string))
    want_even = {i for n, i in enumerate(d["image_ids"]) if n % 2 == 0}
    got_even = {i.decode() for i in even["ids"].numpy().ravel() if i}
    assert got_even == want_even and (even["tags"].numpy()[:, 0] == b"test,even").all()

    # version 2: encoders and embedding calls forbidden
    def forbidden(*args, **kwargs):
        raise AssertionError("an add must encode nothing")
    for target, name in ((publish, "embed_image_gallery"), (publish, "embed_caption_gallery"),
                         (embeddings, "config_image_embeddings"),
                         (embeddings, "config_token_embeddings"),
                         (embeddings, "embed_images"), (embeddings, "embed_token_ids")):
        monkeypatch.setattr(target, name, forbidden)
    rng = np.random.default_rng(5)
    new_rows = rng.standard_normal((3, d["image_emb"].shape[1])).astype(np.float32)
    new_rows /= np.linalg.norm(new_rows, axis=1, keepdims=True)
    new_ids = ["new-a", "new-b", "new-c"]
    added = embedding_shards.write_table(str(tmp_path / "more"), shard_table(
        new_rows, new_ids, "image", [["new"]] * 3), chunk_size=2)
    removed = [d["image_ids"][2], d["image_ids"][5], d["caption_ids"][0]]
    (tmp_path / "gone.txt").write_text("\n".join(removed) + "\n")
    before = {m: files_of(os.path.join(exports, m, "1")) for m in publish.INDEX_MODELS}
    from keras_instance.cli import index as index_program
    assert index_program.removal_ids(str(tmp_path / "gone.txt")) == removed
    result = publish.update_index(config, d["dual"], d["vocab"], exports, [added], removed,
                                  log=lambda s: None)
    assert result["version"] == 2 and result["k_text_to_image"] == K
    for m in publish.INDEX_MODELS:  # version 1 untouched, version 2 beside it
        assert files_of(os.path.join(exports, m, "1")) == before[m]
        assert layout.existing_versions(os.path.join(exports, m)) == [1, 2]
    v2 = gallery_index.read_gallery(os.path.join(exports, "text_to_image", "2"))
    kept = [i for i in d["image_ids"] if i not in removed]
    assert v2["ids"] == kept + new_ids
    rows = [d["image_ids"].index(i) for i in kept]
    np.testing.assert_array_equal(v2["embeddings"], np.concatenate([d["image_emb"][rows],
                                                                    new_rows]))
    assert v2["tags"][-1] == ["new"] and v2["header"]["index_options"]["max_k"] == 20
    v1 = gallery_index.read_gallery(os.path.join(exports, "text_to_image", "1"))
    np.testing.assert_array_equal(v1["tuning_queries"], d["caption_emb"])  # kept for N+1
    np.testing.assert_array_equal(v2["tuning_queries"], v1["tuning_queries"])
    c2 = gallery_index.read_gallery(os.path.join(exports, "image_to_text", "2"))
    assert c2["ids"] == d["caption_ids"][1:]
    t2i = tf.saved_model.load(os.path.join(exports, "text_to_image", "2")).signatures
    out = t2i["search_by_embedding"](embedding=tf.constant(new_rows), k=tf.constant(2),
                                     tag=tf.constant(""), ids=tf.constant([], tf.string))
    assert [r[0].decode() for r in out["ids"].numpy()] == new_ids
    np.testing.assert_allclose(out["scores"].numpy()[:, 0], 1.0, atol=1e-5)
    assert t2i["index_info"]()["max_k"].numpy() == 20
    # version 3 with a recall target: version 1's --nprobe=3 gives way, nprobe is chosen again
    result = publish.update_index(config, d["dual"], d["vocab"], exports, [], [new_ids[2]],
                                  target_recall=0.05, log=lambda s: None)
    v3 = tf.saved_model.load(os.path.join(exports, "text_to_image", "3")).signatures
    assert result["version"] == 3 and v3["index_info"]()["nprobe"].numpy() < 3
    options = gallery_index.read_gallery(os.path.join(exports, "text_to_image", "3"))[
        "header"]["index_options"]
    assert options["target_recall"] == 0.05 and "nprobe" not in options

    with pytest.raises(ValueError, match="already in the index: new-a"):
        publish.update_index(config, d["dual"], d["vocab"], exports, [added], [],
                             log=lambda s: None)
    with pytest.raises(ValueError, match="in no index"):
        publish.update_index(config, d["dual"], d["vocab"], exports, [], ["ghost"],
                             log=lambda s: None)
    other = embedding_shards.write_table(str(tmp_path / "other"), shard_table(
        new_rows[:1], ["x"], "image", fingerprint="run-2"))
    with pytest.raises(ValueError, match="another encoder"):
        publish.update_index(config, d["dual"], d["vocab"], exports, [other], [],
                             log=lambda s: None)
    assert layout.existing_versions(os.path.join(exports, "text_to_image")) == [1, 2, 3]


# ----------------------------------------------------------------------------- end to end

def start_standin(exports) -> StandinProcess:
    """`python -m serving.standin` on a free loopback port, serving the exports."""
    return StandinProcess(
        [f"--model_config={os.path.join(exports, 'models.config')}", f"--models_root={exports}",
         "--file_system_poll_wait_seconds=0", "--tensorflow_intra_op_parallelism=1",
         "--tensorflow_inter_op_parallelism=1", "--grpc_max_threads=4"],
        os.path.join(exports, os.pardir, "standin.log"), start_s=SERVER_START_S, env=ENV)


@pytest.mark.server
def test_end_to_end_through_the_client(indexed):
    d = indexed
    standin = start_standin(d["exports"])
    try:
        channel = client.make_channel(standin.address)
        try:
            stub = client.prediction_stub(channel)
            # Text → image: several test captions (the first two of every test image).
            picks = [i for i in range(len(d["captions"]))
                     if d["caption_ids"][i].endswith(("#0", "#1"))]
            sentences = [d["captions"][i] for i in picks]
            got = client.predict(stub, "text_to_image", {"sentences": sentences}, timeout=60)
            assert set(got) == {"ids", "scores"}
            query = d["caption_emb"][picks]
            order = assert_same_top_k(got["ids"], got["scores"], d["image_ids"], query,
                                      d["image_emb"], K)
            owner = d["caption_owner"][picks]
            right = np.flatnonzero(order[:, 0] == owner)  # captions the model gets right
            assert len(right) >= 1, "the tiny model ranks no caption's image first in-process"
            _, want_scores, _ = reference_top_k(query, d["image_emb"], K)
            for q in right:
                assert got["ids"][q, 0].decode() == d["image_ids"][owner[q]], sentences[q]
                np.testing.assert_allclose(got["scores"][q], want_scores[q], rtol=0, atol=ATOL)

            # Image → text: one test image's PNG bytes.
            with open(d["paths"][0], "rb") as f:
                png = f.read()
            assert png.startswith(b"\x89PNG")
            got = client.predict(stub, "image_to_text", {"images": [png]}, timeout=60)
            assert set(got) == {"ids", "captions", "scores"} and got["ids"].shape == (1, K)
            assert_same_top_k(got["ids"], got["scores"], d["caption_ids"],
                              d["image_emb"][:1], d["caption_emb"], K)
            by_id = dict(zip(d["caption_ids"], d["captions"]))
            assert [c.decode() for c in got["captions"][0]] == \
                [by_id[i.decode()] for i in got["ids"][0]]
            assert standin.alive(), "the stand-in died:\n" + standin.log_tail()
        finally:
            channel.close()
    finally:
        standin.stop()
