"""The query API (issue 20, item 5): per-request k, a tag or an id allow-list, query by
embedding, more like this, metadata with each hit — through the real client program
(`python -m serving.client ...` in a subprocess), its Python API (`serving.client.SearchClient`)
and REST, against the real stand-in server.

The module fixture writes small index SavedModels with the contract's signatures (`search`,
`search_by_embedding`, `embedding_of`, beside `serving_default`) over a random 12-image and
10-caption gallery with paths, captions and tags, in TF Serving's layout with a models.config,
and starts one `python -m serving.standin` for the module. `image_to_text` also takes `nprobe`
(as an approximate index would); `old_index` has only serving_default (an export from before
the query API). Expected rankings are computed here with numpy from the gallery rows and the
query embeddings the served encoders give.
"""
import base64
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

from serving import client  # noqa: E402
from serving.client import SearchClient, ServerError, UnsupportedError  # noqa: E402
from serving.standin_process import StandinProcess  # noqa: E402

pytestmark = pytest.mark.server  # these start the stand-in server
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
DIM, K_MAX, DEFAULT_K, NPROBE_MAX = 16, 8, 5, 4
COLOURS, ANIMALS = ("red", "blue", "green"), ("dog", "cat")


def _gallery(count, prefix, seed):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(count, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    ids = [f"{prefix}{i:02d}" for i in range(count)]
    tags = [(COLOURS[i % 3],) + ((ANIMALS[i % 2],) if i % 4 < 2 else ()) for i in range(count)]
    return dict(rows=rows, ids=ids, tags=tags)


IMAGES = _gallery(12, "img", 0)
IMAGES["paths"] = [f"photos/{i}.jpg" for i in IMAGES["ids"]]
IMAGES["captions"] = [f"photo number {i} with {' and '.join(t)}" for i, t in
                      enumerate(IMAGES["tags"])]
CAPTIONS = _gallery(10, "cap", 1)
CAPTIONS["paths"] = [IMAGES["paths"][i] for i in range(10)]  # the image each caption describes
CAPTIONS["captions"] = [f"caption {i}: a {t[0]} thing" for i, t in enumerate(CAPTIONS["tags"])]


# ----------------------------------------------------------------------------- tiny models

def _normalize(x):
    return x / tf.norm(x, axis=1, keepdims=True)


class TextEncoder(tf.Module):
    """sentences → a deterministic unit vector [N, DIM] (word hashes)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, sentences):
        words = tf.strings.split(sentences)
        hot = tf.one_hot(tf.strings.to_hash_bucket_fast(words, DIM), DIM)
        return {"embedding": _normalize(tf.reduce_sum(hot, axis=1) + 0.05)}


class ImageEncoder(tf.Module):
    """images → their mean colour through a fixed projection, as a unit vector [N, DIM]."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(2)
        self.projection = tf.constant(rng.normal(size=(3, DIM)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, images):
        def mean_colour(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1]) / 255.0
        colours = tf.map_fn(mean_colour, images, fn_output_signature=tf.TensorSpec([3]))
        return {"embedding": _normalize(tf.matmul(colours - 0.5, self.projection))}


def _fail_unless(condition, *message):
    """InvalidArgumentError "assertion failed: [MESSAGE]" unless `condition` (as an index's
    graph answers a bad k, width, tag or id)."""
    return tf.debugging.Assert(condition, [tf.strings.join([tf.strings.as_string(m) if m.dtype !=
                                                     tf.string else m for m in
                                                     map(tf.convert_to_tensor, message)])])


class Index(tf.Module):
    """The index models' signatures (the contract of issue 20's export) over a fixed gallery:
    exact search, k per request up to K_MAX, a tag, an id allow-list, padding ("" / -inf)."""

    def __init__(self, encoder, gallery, query_input, with_captions, static_width, nprobe):
        super().__init__()
        self.encoder, self.with_captions = encoder, with_captions
        self.gallery = tf.Variable(gallery["rows"], trainable=False)
        self.ids = tf.constant(gallery["ids"])
        self.paths = tf.constant(gallery["paths"])
        self.captions = tf.constant(gallery["captions"])
        self.tags = tf.constant([",".join(t) for t in gallery["tags"]])
        self.tag_names = sorted({t for tags in gallery["tags"] for t in tags})
        self.known_tags = tf.constant(self.tag_names)
        self.membership = tf.constant([[t in tags for tags in gallery["tags"]]
                                       for t in self.tag_names])  # [T, G]
        width = DIM if static_width else None
        query = tf.TensorSpec([None], tf.string, name=query_input)
        controls = [tf.TensorSpec([], tf.int32, name="k"), tf.TensorSpec([], tf.string, name="tag"),
                    tf.TensorSpec([None], tf.string, name="ids")]
        embedding = tf.TensorSpec([None, width], tf.float32, name="embedding")
        self.search = tf.function(lambda q, k, tag, ids: self._search(self._encode(q), k, tag, ids),
                                  input_signature=[query, *controls])
        self.search_by_embedding = tf.function(
            lambda embedding, k, tag, ids: self._search(embedding, k, tag, ids),
            input_signature=[embedding, *controls])
        self.nprobe = {}
        if nprobe:  # an approximate index: the same signatures plus nprobe, as `_nprobe` twins
            with_nprobe = controls + [tf.TensorSpec([], tf.int32, name="nprobe")]
            self.nprobe = {
                "search_nprobe": tf.function(
                    lambda q, k, tag, ids, nprobe: self._search(self._encode(q), k, tag, ids,
                                                                nprobe),
                    input_signature=[query, *with_nprobe]),
                "search_by_embedding_nprobe": tf.function(
                    lambda embedding, k, tag, ids, nprobe: self._search(embedding, k, tag, ids,
                                                                        nprobe),
                    input_signature=[embedding, *with_nprobe])}
        self.serve = tf.function(lambda q: self._default(self._encode(q)),
                                 input_signature=[query])
        self.index_info = tf.function(self._index_info, input_signature=[])
        self.embedding_of = tf.function(self._embedding_of,
                                        input_signature=[tf.TensorSpec([None], tf.string,
                                                                       name="ids")])

    def signatures(self):
        return {"serving_default": self.serve, "search": self.search,
                "search_by_embedding": self.search_by_embedding,
                "embedding_of": self.embedding_of, "index_info": self.index_info, **self.nprobe}

    def _encode(self, queries):
        return self.encoder.serve(queries)["embedding"]

    def _positions(self, ids):
        """Gallery position of each id; an unknown one fails with its name."""
        equal = tf.equal(ids[:, None], self.ids[None, :])  # [M, G]
        found = tf.reduce_any(equal, axis=1)
        first_unknown = tf.gather(tf.concat([tf.boolean_mask(ids, ~found), [""]], 0), 0)
        _fail_unless(tf.reduce_all(found), "unknown id '", first_unknown, "': not in the gallery")
        return tf.argmax(tf.cast(equal, tf.int32), axis=1), equal

    def _search(self, embedding, k, tag, ids, nprobe=None):
        checks = [
            _fail_unless((k >= 1) & (k <= K_MAX), "k must be between 1 and ", K_MAX, ", got ", k),
            _fail_unless(tf.shape(embedding)[1] == DIM, "the query embedding has ",
                         tf.shape(embedding)[1], " values per row; this index's have ", DIM)]
        if nprobe is not None:
            checks.append(_fail_unless((nprobe >= 0) & (nprobe <= NPROBE_MAX),
                                       "nprobe must be between 0 and ", NPROBE_MAX,
                                       " (the index's lists), got ", nprobe))
        with tf.control_dependencies(checks):  # before the matmul that a wrong width breaks
            embedding = tf.identity(embedding)
        is_tag = tf.equal(self.known_tags, tag)
        _fail_unless(tf.equal(tag, "") | tf.reduce_any(is_tag), "unknown tag '", tag,
                     "': the gallery's tags are ", tf.strings.reduce_join(self.known_tags,
                                                                          separator=", "))
        allowed = tf.reduce_any(self.membership & is_tag[:, None], axis=0) | tf.equal(tag, "")
        equal = tf.equal(ids[:, None], self.ids[None, :])  # unknown ids match nothing
        allowed &= tf.reduce_any(equal, axis=0) | tf.equal(tf.size(ids), 0)
        scores = tf.matmul(embedding, self.gallery, transpose_b=True)
        scores = tf.where(allowed[None, :], scores, -np.inf)
        top = tf.math.top_k(scores, k=k)
        found = top.values > -np.inf

        def take(values, empty=""):
            return tf.where(found, tf.gather(values, top.indices), empty)
        return {"ids": take(self.ids), "scores": top.values, "paths": take(self.paths),
                "captions": take(self.captions), "tags": take(self.tags)}

    def _default(self, embedding):
        top = tf.math.top_k(tf.matmul(embedding, self.gallery, transpose_b=True), k=DEFAULT_K)
        out = {"ids": tf.gather(self.ids, top.indices), "scores": top.values}
        if self.with_captions:
            out["captions"] = tf.gather(self.captions, top.indices)
        return out

    def _embedding_of(self, ids):
        positions, _ = self._positions(ids)
        return {"embedding": tf.gather(self.gallery, positions)}

    def _index_info(self):
        return {"index": tf.constant("exact"), "storage": tf.constant("float32"),
                "size": tf.size(self.ids, out_type=tf.int64), "dim": tf.constant(DIM),
                "nlist": tf.constant(1), "nprobe": tf.constant(1), "max_k": tf.constant(K_MAX)}


class OldIndex(tf.Module):
    """An index exported before the query API: serving_default only."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.gallery = tf.Variable(IMAGES["rows"], trainable=False)
        self.ids = tf.constant(IMAGES["ids"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        query = self.encoder.serve(sentences)["embedding"]
        top = tf.math.top_k(tf.matmul(query, self.gallery, transpose_b=True), k=3)
        return {"ids": tf.gather(self.ids, top.indices), "scores": top.values}


def save(module, folder, signatures):
    tf.saved_model.save(module, folder + ".tmp", signatures=signatures)
    os.rename(folder + ".tmp", folder)


def png_bytes(colour):
    return tf.io.encode_png(np.broadcast_to(np.array(colour, np.uint8), (4, 6, 3)).copy()).numpy()


MODELS = ("text_encoder", "image_encoder", "text_to_image", "image_to_text", "old_index")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("query_api"))
    text, image = TextEncoder(), ImageEncoder()
    t2i = Index(text, IMAGES, "sentences", with_captions=False, static_width=False, nprobe=False)
    i2t = Index(image, CAPTIONS, "images", with_captions=True, static_width=True, nprobe=True)
    for name, module, signatures in [
            ("text_encoder", text, {"serving_default": text.serve}),
            ("image_encoder", image, {"serving_default": image.serve}),
            ("text_to_image", t2i, t2i.signatures()), ("image_to_text", i2t, i2t.signatures()),
            ("old_index", OldIndex(text), None)]:
        os.makedirs(os.path.join(root, name))
        save(module, os.path.join(root, name, "1"),
             signatures or {"serving_default": module.serve})
    config = os.path.join(root, "models.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n" + "".join(
            f'  config {{ name: "{n}" base_path: "/models/{n}" model_platform: "tensorflow" }}\n'
            for n in MODELS) + "}\n")
    standin = StandinProcess(
        [f"--model_config={config}", "--rest_port=0", "--file_system_poll_wait_seconds=0",
         "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1",
         "--grpc_max_threads=8"], os.path.join(root, "standin.log"), env=ENV)
    try:
        with SearchClient(standin.address, deadline_s=30) as api:
            yield dict(address=standin.address, rest=f"http://127.0.0.1:{standin.rest_port}",
                       standin=standin, api=api, root=root)
    finally:
        standin.stop()


# ----------------------------------------------------------------------------- helpers

def expected(query, gallery, k, tag="", ids=()):
    """(ids, scores) of an exact search with numpy: the allowed items by descending score."""
    scores = gallery["rows"] @ np.asarray(query, np.float32)
    allowed = [i for i in range(len(gallery["ids"]))
               if (not tag or tag in gallery["tags"][i]) and (not ids or gallery["ids"][i] in ids)]
    order = sorted(allowed, key=lambda i: (-scores[i], i))[:k]
    return [gallery["ids"][i] for i in order], scores[order]


def assert_hits(hits, query, gallery, k, tag="", ids=()):
    want_ids, want_scores = expected(query, gallery, k, tag, ids)
    assert [h.id for h in hits] == want_ids
    np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-5)
    for hit in hits:  # the metadata stored for that item
        i = gallery["ids"].index(hit.id)
        assert (hit.path, hit.caption, hit.tags) == (gallery["paths"][i], gallery["captions"][i],
                                                     gallery["tags"][i])


def cli(server, *args):
    """Starts `python -m serving.client --server=... ARGS` (call .communicate on it)."""
    return subprocess.Popen([sys.executable, "-m", "serving.client",
                             f"--server={server['address']}", "--deadline_s=60", *args],
                            cwd=ROOT, env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(proc):
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def assert_serving(server):
    """The server is up and answers a good query."""
    assert server["standin"].alive(), "the stand-in died:\n" + server["standin"].log_tail()
    assert len(server["api"].text_search("a red dog", k=2).hits[0]) == 2


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    text = raw.decode()
    return status, (json.loads(text) if text.lstrip().startswith("{") else text)


# ----------------------------------------------------------------------------- Python API

def test_text_search_with_per_request_k(server):
    api = server["api"]
    sentences = ["a red dog", "two green cats on grass"]
    vectors = api.embed_text(sentences).vectors
    assert vectors.shape == (2, DIM)
    for k in (1, 3, K_MAX):
        result = api.text_search(sentences, k=k)
        assert (result.model, result.signature, result.k, result.version) == \
            ("text_to_image", "search", k, 1)
        assert result.queries == sentences and result.elapsed_ms > 0
        for hits, vector in zip(result.hits, vectors):
            assert len(hits) == k
            assert_hits(hits, vector, IMAGES, k)
    # Without k: serving_default's k (read from the metadata), the same hits as serving_default.
    result = api.text_search("a red dog")
    assert result.k == DEFAULT_K and len(result.hits[0]) == DEFAULT_K
    default = client.predict(client.prediction_stub(client.make_channel(server["address"])),
                             "text_to_image", {"sentences": ["a red dog"]})
    assert [h.id for h in result.hits[0]] == [i.decode() for i in default["ids"][0]]


def test_tag_and_id_restrictions(server):
    api = server["api"]
    vector = api.embed_text("a blue cat").vectors[0]
    for tag in ("red", "dog"):
        hits = api.text_search("a blue cat", k=K_MAX, tag=tag).hits[0]
        assert hits and all(tag in h.tags for h in hits)
        assert len(hits) == min(K_MAX, sum(tag in t for t in IMAGES["tags"]))  # padding dropped
        assert_hits(hits, vector, IMAGES, K_MAX, tag=tag)
    allowed = ["img01", "img05", "img07"]
    hits = api.text_search("a blue cat", k=5, ids=allowed).hits[0]
    assert sorted(h.id for h in hits) == allowed  # 3 of k=5: the padding is left out
    assert_hits(hits, vector, IMAGES, 5, ids=allowed)
    # Both at once: the items with the tag among the ids; none left is an empty list.
    hits = api.text_search("a blue cat", k=5, tag="green", ids=allowed).hits[0]
    assert [h.id for h in hits] == ["img05"]
    assert api.text_search("a blue cat", k=5, tag="cat", ids=["img00"]).hits == [[]]
    # An id the gallery lacks matches nothing (as the index models do), it is not an error.
    assert [h.id for h in api.text_search("x", k=3, ids=["img01", "nope"]).hits[0]] == ["img01"]
    assert api.index_info() == {"index": "exact", "storage": "float32", "size": 12,
                                "dim": DIM, "nlist": 1, "nprobe": 1, "max_k": K_MAX}
    with pytest.raises(UnsupportedError, match="'old_index' .* no 'index_info' signature"):
        api.index_info("old_index")


def test_image_search_and_nprobe(server, tmp_path):
    api = server["api"]
    images = [png_bytes([250, 10, 10]), png_bytes([10, 10, 250])]
    vectors = api.embed_images(images).vectors
    result = api.image_search(images, k=4, tag="blue")
    assert result.model == "image_to_text" and result.queries == ["image 0", "image 1"]
    for hits, vector in zip(result.hits, vectors):
        assert_hits(hits, vector, CAPTIONS, 4, tag="blue")
    # image_to_text takes nprobe (an approximate index): through search_nprobe when given.
    path = tmp_path / "red.png"
    path.write_bytes(images[0])
    again = api.image_search(str(path), k=4, tag="blue", nprobe=NPROBE_MAX)
    assert again.queries == [str(path)]  # alone, not in a batch of two: scores within 1e-6
    assert [h.id for h in again.hits[0]] == [h.id for h in result.hits[0]]
    np.testing.assert_allclose([h.score for h in again.hits[0]],
                               [h.score for h in result.hits[0]], atol=1e-6)
    with pytest.raises(ServerError) as info:
        api.image_search(images[:1], k=4, nprobe=NPROBE_MAX + 1)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"nprobe must be between 0 and {NPROBE_MAX} (the index's lists), got 5" in \
        info.value.details
    # text_to_image is exact: asking it for nprobe is refused before anything is sent.
    with pytest.raises(UnsupportedError, match=r"has no 'nprobe' input \(an exact index"):
        api.text_search("x", k=2, nprobe=2)


def test_embedding_search_and_more_like_this(server):
    api = server["api"]
    rng = np.random.default_rng(5)
    vectors = IMAGES["rows"][[3, 8]] + 0.3 * rng.normal(size=(2, DIM)).astype(np.float32)
    result = api.embedding_search(vectors, k=6)
    assert result.model == "text_to_image" and result.signature == "search_by_embedding"
    for hits, vector in zip(result.hits, vectors):
        assert_hits(hits, vector, IMAGES, 6)
    hits = api.embedding_search(CAPTIONS["rows"][2], "image_to_text", k=3, tag="green").hits[0]
    assert_hits(hits, CAPTIONS["rows"][2], CAPTIONS, 3, tag="green")

    assert api.embedding_of("img04").vectors.shape == (1, DIM)
    rows = api.embedding_of(["img04", "img09"])
    np.testing.assert_array_equal(rows.vectors, IMAGES["rows"][[4, 9]])
    like = api.more_like_this("img04", k=4)
    assert like.queries == ["like img04"] and like.signature == "search_by_embedding"
    first = like.hits[0][0]
    assert first.id == "img04" and abs(first.score - 1.0) < 1e-5
    assert_hits(like.hits[0], IMAGES["rows"][4], IMAGES, 4)
    like = api.more_like_this(["cap07", "cap01"], "image_to_text", k=2)
    assert [hits[0].id for hits in like.hits] == ["cap07", "cap01"]
    assert [hits[0].caption for hits in like.hits] == [CAPTIONS["captions"][7],
                                                       CAPTIONS["captions"][1]]


def test_bad_requests_are_invalid_argument_with_the_servers_message(server):
    api = server["api"]
    cases = [
        (lambda: api.text_search("x", k=0), "k must be between 1 and 8, got 0"),
        (lambda: api.text_search("x", k=K_MAX + 1), "k must be between 1 and 8, got 9"),
        (lambda: api.embedding_search(np.ones(5), k=2),  # checked by the graph
         "the query embedding has 5 values per row; this index's have 16"),
        (lambda: api.embedding_search(np.ones(5), "image_to_text", k=2),  # by the signature
         "input 'embedding': shape [1, 5] is incompatible"),
        (lambda: api.text_search("x", k=2, tag="purple"),
         "unknown tag 'purple': the gallery's tags are blue, cat, dog, green, red"),
        (lambda: api.more_like_this("nope"), "unknown id 'nope': not in the gallery"),
    ]
    for call, message in cases:
        with pytest.raises(ServerError) as info:
            call()
        error = info.value
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (message, error.message)
        assert message in error.details, (message, error.details)
        assert error.message.startswith(f"{server['address']} rejected the request for model ")
        assert "\n" not in error.message
        assert_serving(server)
    with pytest.raises(UnsupportedError, match="'old_index' version 1 .* has no 'search' "
                                               "signature .*not an index model"):
        api.text_search("x", k=2, model="old_index")
    with pytest.raises(ValueError, match="NaN or infinite"):
        api.embedding_search([np.nan] * DIM)
    with pytest.raises(TypeError, match="list of strings"):
        api.text_search("x", ids="img01,img02")
    with pytest.raises(TypeError, match="nprobe must be an integer, got 2.5"):
        api.text_search("x", nprobe=2.5)  # not silently 2


# ----------------------------------------------------------------------------- the program

def test_client_program_flags(server, tmp_path):
    """--k, --tag, --ids, --embedding (numbers, .npy, text file), --like, --json, --nprobe,
    each through `python -m serving.client`, all started at once."""
    api = server["api"]
    vector = IMAGES["rows"][6] + 0.1
    npy, txt = tmp_path / "two.npy", tmp_path / "two.txt"
    np.save(npy, IMAGES["rows"][[2, 10]])
    txt.write_text("\n".join(", ".join(f"{v:.8f}" for v in row) for row in IMAGES["rows"][[2, 10]])
                   + "\n")
    image = tmp_path / "green.png"
    image.write_bytes(png_bytes([10, 240, 10]))
    runs = {
        "plain": cli(server, "--text=a red dog"),
        "k": cli(server, "--text=a red dog", "--k=3"),
        "tag": cli(server, "--text=a red dog", "--k=4", "--tag=cat", "--json"),
        "ids": cli(server, "--text=a red dog", "--k=5", "--ids=img01,img05,img07", "--json"),
        "numbers": cli(server, "--embedding=" + ",".join(f"{v:.8f}" for v in vector), "--k=2",
                       "--json"),
        "npy": cli(server, f"--embedding={npy}", "--k=2", "--json"),
        "txt": cli(server, f"--embedding={txt}", "--k=2", "--json"),
        "like": cli(server, "--like=img04", "--k=3"),
        "image": cli(server, f"--image={image}", "--k=2", "--nprobe=2", "--json"),
        "old": cli(server, "--text=a red dog", "--model=old_index", "--json"),
    }
    done = {name: finish(proc) for name, proc in runs.items()}
    for name, (code, out, err) in done.items():
        assert code == 0, (name, err[-3000:])
        assert "Traceback" not in err, (name, err)

    # Plain --text: serving_default, as before the query API.
    out = done["plain"][1]
    assert "model text_to_image version 1 signature serving_default" in out
    assert "ids, scores: top-5 for 1 query" in out

    # --k: the search signature, one line per hit with its metadata.
    out = done["k"][1].splitlines()
    want = api.text_search("a red dog", k=3).hits[0]
    assert out[0].startswith("model text_to_image version 1 signature search (")
    assert out[1] == "[0] a red dog: 3 hits (k 3)"
    assert out[2].split() == ["rank", "score", "id", "path", "caption", "tags"]
    for line, hit in zip(out[3:], want):
        assert line.split()[:4] == [str(want.index(hit) + 1), f"{hit.score:.6f}", hit.id,
                                    hit.path]
        assert hit.caption in line and line.endswith(",".join(hit.tags))
    assert len(out) == 6

    def hits_of(name, query=0):
        document = json.loads(done[name][1])
        return document, document["queries"][query]["hits"]

    document, hits = hits_of("tag")
    assert document["signature"] == "search" and document["k"] == 4
    assert [h["id"] for h in hits] == [h.id for h in api.text_search("a red dog", k=4,
                                                                     tag="cat").hits[0]]
    assert all("cat" in h["tags"] for h in hits) and hits[0]["rank"] == 1
    i = IMAGES["ids"].index(hits[0]["id"])
    assert hits[0]["path"] == IMAGES["paths"][i] and hits[0]["caption"] == IMAGES["captions"][i]

    _, hits = hits_of("ids")
    assert sorted(h["id"] for h in hits) == ["img01", "img05", "img07"]

    document, hits = hits_of("numbers")
    assert document["signature"] == "search_by_embedding"
    assert [h["id"] for h in hits] == expected(vector, IMAGES, 2)[0]
    for name in ("npy", "txt"):
        document, _ = hits_of(name)
        assert [q["hits"][0]["id"] for q in document["queries"]] == ["img02", "img10"], name
        assert all(abs(q["hits"][0]["score"] - 1) < 1e-5 for q in document["queries"])

    out = done["like"][1].splitlines()
    assert out[1] == "[0] like img04: 3 hits (k 3)"
    assert out[3].split()[:3] == ["1", "1.000000", "img04"]

    document, hits = hits_of("image")
    assert document["model"] == "image_to_text" and document["queries"][0]["query"] == str(image)
    assert [h["id"] for h in hits] == [h.id for h in api.image_search(
        image.read_bytes(), k=2).hits[0]]

    # --json on a plain call: serving_default's top-k as the same document.
    document, hits = hits_of("old")
    assert document["signature"] == "serving_default" and len(hits) == 3
    assert set(hits[0]) == {"rank", "id", "score", "path", "caption", "tags"}


def test_client_program_errors_are_one_line(server, tmp_path):
    """Each INVALID_ARGUMENT reaches the user as one line naming the server's message, exit 1,
    no traceback; a model or input the served index lacks, the same; the server answers on."""
    address = server["address"]
    rejected = f"error: {address} rejected the request for model "
    cases = {
        ("--text=x", "--k=0"): rejected + "'text_to_image': k must be between 1 and 8, got 0",
        ("--text=x", "--k=9"): "k must be between 1 and 8, got 9",
        ("--embedding=0.1,0.2,0.3", "--k=2"): "the query embedding has 3 values per row; this "
                                              "index's have 16",
        ("--embedding=0.1,0.2,0.3", "--model=image_to_text"): rejected + "'image_to_text': "
        "input 'embedding': shape [1, 3] is incompatible",
        ("--text=x", "--tag=purple"): "unknown tag 'purple': the gallery's tags are blue, cat",
        ("--like=nope",): rejected + "'text_to_image': unknown id 'nope': not in the gallery",
        ("--text=x", "--nprobe=1"): "error: model 'text_to_image' signature 'search' has no "
                                    "'nprobe' input (an exact index has none",
        ("--text=x", "--k=2", "--model=old_index"): "error: model 'old_index' version 1 on "
                                                    f"{address} has no 'search' signature",
    }
    runs = {args: cli(server, *args) for args in cases}
    for args, proc in runs.items():
        code, out, err = finish(proc)
        assert code == client.EXIT_RPC_ERROR, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: "), (args, err)
        assert cases[args] in err, (args, err)
        assert "Traceback" not in err and out == "", (args, out, err)
    assert_serving(server)

    bad = tmp_path / "bad.txt"
    bad.write_text("0.1, 0.2\n0.3, zebra\n")
    usage = [  # the program's run(), as main() calls it with the parsed flags
        (dict(embeddings=["1,2,x"]), "error: --embedding: 'x' is not a number"),
        (dict(embeddings=[str(bad)]), f"error: {bad}, line 2: 'zebra' is not a number"),
        (dict(embeddings=["1,2", "1,2,3"]), "vectors differ in length (2, 3 values)"),
        (dict(texts=["x"], k=3, embed=True), "error: --k query an index through its search "
                                             "signatures; --embed belong to plain"),
        (dict(texts=["x"], like=["img01"]), "not --text and --like together"),
        (dict(status=True, json_output=True), "error: --json prints queries' answers"),
    ]
    for kwargs, message in usage:
        out, err = io.StringIO(), io.StringIO()
        code = client.run(server=address, out=out, err=err, **kwargs)
        assert code == client.EXIT_USAGE and message in err.getvalue(), (kwargs, err.getvalue())


def test_output_cut_short_by_head_is_not_a_traceback(server):
    """`python -m serving.client ... | head -1`: head exits after one line while the client
    still writes (hundreds of KB): no BrokenPipeError traceback, nothing on stderr."""
    texts = " ".join(f"'--text=sentence number {i}'" for i in range(1500))
    command = (f"{sys.executable} -m serving.client --server={server['address']} "
               f"--deadline_s=60 --embed {texts} 2>client.err | head -1; "
               f"echo \"status ${{PIPESTATUS[0]}}\"; cat client.err")
    proc = subprocess.run(["bash", "-c", command], cwd=server["root"], env=dict(ENV,
                          PYTHONPATH=ROOT), text=True, capture_output=True, timeout=180)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("model text_encoder version 1 signature serving_default"), lines
    assert lines[1] == f"status {client.EXIT_BROKEN_PIPE}", proc.stdout[-3000:]
    assert lines[2:] == [], proc.stdout[-3000:]  # client.err is empty: no traceback
    assert_serving(server)


# ----------------------------------------------------------------------------- REST, metrics

def test_rest_answers_the_new_signatures(server):
    api = server["api"]
    url = f"{server['rest']}/v1/models/text_to_image:predict"
    want = api.text_search("a red dog", k=3, tag="dog").hits[0]
    status, body = http("POST", url, {"signature_name": "search", "inputs": {
        "sentences": ["a red dog"], "k": 3, "tag": "dog", "ids": []}})
    assert status == 200, body
    out = body["outputs"]
    assert out["ids"][0] == [h.id for h in want] and out["tags"][0] == [",".join(h.tags)
                                                                        for h in want]
    np.testing.assert_allclose(out["scores"][0], [h.score for h in want], atol=1e-6)
    # Padding comes back as id "" and score -inf (JSON's -Infinity, as TF Serving writes it).
    status, body = http("POST", url, {"signature_name": "search_by_embedding", "inputs": {
        "embedding": [IMAGES["rows"][4].tolist()], "k": 3, "tag": "", "ids": ["img04"]}})
    assert status == 200, body
    assert body["outputs"]["ids"] == [["img04", "", ""]]
    assert body["outputs"]["scores"][0][1:] == [-np.inf, -np.inf]
    status, body = http("POST", f"{server['rest']}/v1/models/image_to_text:predict", {
        "signature_name": "embedding_of", "inputs": {"ids": ["cap03"]}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], [CAPTIONS["rows"][3]], atol=1e-6)
    b64 = base64.b64encode(png_bytes([10, 10, 250])).decode()
    status, body = http("POST", f"{server['rest']}/v1/models/image_to_text:predict", {
        "signature_name": "search_nprobe", "inputs": {"images": [{"b64": b64}], "k": 2,
                                                      "tag": "", "ids": [], "nprobe": 0}})
    assert status == 200 and len(body["outputs"]["captions"][0]) == 2

    for payload, message in [
            ({"signature_name": "search", "inputs": {"sentences": ["x"], "k": 0, "tag": "",
                                                     "ids": []}},
             "assertion failed: [k must be between 1 and 8, got 0]"),
            ({"signature_name": "search", "inputs": {"sentences": ["x"], "k": 2, "tag": "blue!",
                                                     "ids": []}},
             r"assertion failed: [unknown tag \'blue!\'"),  # as TF Serving: raw, C-escaped
            ({"signature_name": "search", "instances": [{"sentences": "x", "k": 2, "tag": "",
                                                         "ids": []}]},
             "signature 'search' takes scalar inputs {k, tag}, which the row format")]:
        status, body = http("POST", url, payload)
        assert status == 400 and message in body["error"], (payload, status, body)
        assert_serving(server)


def request_count(server, api_name, model):
    status, text = http("GET", f"{server['rest']}/monitoring/prometheus/metrics")
    assert status == 200
    match = re.search(rf':tensorflow:serving:request_count{{api="{api_name}",'
                      rf'model_name="{model}",status="OK"}} (\d+)', text)
    return int(match[1]) if match else 0


def test_rest_requests_are_counted_with_their_model(server):
    before = {api: request_count(server, api, "image_to_text") for api in
              ("predict", "metadata", "status")}
    base = f"{server['rest']}/v1/models/image_to_text"
    for _ in range(2):
        assert http("POST", f"{base}:predict", {"signature_name": "embedding_of",
                                                "inputs": {"ids": ["cap01"]}})[0] == 200
    assert http("GET", f"{base}/metadata")[0] == 200
    assert http("GET", f"{base}/versions/1")[0] == 200
    after = {api: request_count(server, api, "image_to_text") for api in before}
    assert after == {"predict": before["predict"] + 2, "metadata": before["metadata"] + 1,
                     "status": before["status"] + 1}
    _, text = http("GET", f"{server['rest']}/monitoring/prometheus/metrics")
    assert 'api="predict",model_name=""' not in text


def test_standin_start_prints_no_tensorflow_noise(server):
    """The cuInit E-line (no GPU here), the absl pre-init warnings and cuda-driver lines are
    TensorFlow start-up noise: not in the stand-in's log; its own lines are."""
    log = server["standin"].log_tail(200_000)
    for noise in ("failed call to cuInit", "before absl::InitializeLog() is called",
                  "Could not find cuda drivers"):
        assert noise not in log, log[:3000]
    assert not [line for line in log.splitlines() if line.startswith("E0000")], log[:3000]


def test_quiet_import_keeps_other_lines():
    from serving.standin import quiet_tensorflow
    line = "E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: ..."
    assert quiet_tensorflow.is_noise(line, has_gpu=False)
    assert not quiet_tensorflow.is_noise(line, has_gpu=True)  # a GPU that fails: shown
    assert not quiet_tensorflow.is_noise("E0000 ...] something real broke", has_gpu=False)


# ------------------------------------------------------------------------- the real index models

@pytest.fixture(scope="module")
def real(trained_run, tmp_path_factory):
    """The session's tiny trained run, exported, indexed by `python -m keras_instance.cli.index
    --gallery=split:test` (the index models of keras_instance/export), served by a stand-in."""
    import shutil

    from conftest import run_program
    root = tmp_path_factory.mktemp("query_api_real")
    exports = str(root / "exports")
    shutil.copytree(trained_run["exports"], exports)
    out = run_program("keras_instance.cli.index", f"--workdir={trained_run['config'].workdir}",
                      f"--export_dir={exports}", "--gallery=split:test")
    assert "indexed as version 1" in out.stdout, out.stdout
    standin = StandinProcess(
        [f"--model_config={os.path.join(exports, 'models.config')}", f"--models_root={exports}",
         "--rest_port=0", "--file_system_poll_wait_seconds=0",
         "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1"],
        str(root / "standin.log"), start_s=300, env=ENV)
    try:
        with SearchClient(standin.address, deadline_s=60) as api:
            yield dict(address=standin.address, rest=f"http://127.0.0.1:{standin.rest_port}",
                       standin=standin, api=api, test=trained_run["test"])
    finally:
        standin.stop()


@pytest.mark.slow
def test_real_index_models(real):
    """The same API against the index models the exporter writes: k per request, more like
    this, embedding search, metadata, and each INVALID_ARGUMENT's message through the program."""
    api, test = real["api"], real["test"]
    caption, image_ids = test[0].captions[0], {r.image_id for r in test}
    info = api.index_info()
    assert info["index"] in ("exact", "ivf") and info["size"] == len(test), info
    default = api.text_search(caption)  # serving_default's k
    assert default.k == len(default.hits[0]) >= 3
    for k in (1, 3):
        hits = api.text_search(caption, k=k).hits[0]
        assert [h.id for h in hits] == [h.id for h in default.hits[0][:k]]
        assert {h.id for h in hits} <= image_ids
    by_id = {r.image_id: r for r in test}
    for hit in default.hits[0]:  # each hit's stored metadata names its image
        assert hit.path and os.path.basename(hit.path) == os.path.basename(
            by_id[hit.id].image_path), (hit, by_id[hit.id].image_path)
    first = default.hits[0][0].id
    like = api.more_like_this(first, k=3).hits[0]
    assert like[0].id == first and abs(like[0].score - 1.0) < 1e-4, like
    rows = api.embedding_of([first]).vectors
    assert rows.shape == (1, info["dim"])
    assert [h.id for h in api.embedding_search(rows, k=3).hits[0]] == [h.id for h in like]
    assert [h.id for h in api.text_search(caption, k=3, ids=[like[2].id, first]).hits[0]] == \
        sorted([like[2].id, first], key=[h.id for h in default.hits[0]].index)
    with open(test[0].image_path, "rb") as f:
        captions = api.image_search(f.read(), k=2).hits[0]
    assert len(captions) == 2 and all(h.caption for h in captions)

    address = real["address"]
    rejected = f"error: {address} rejected the request for model 'text_to_image': "
    cases = {
        ("--text=a red circle", "--k=0"): rejected + "k = 0 is outside the allowed range 1..",
        ("--text=a red circle", f"--k={info['max_k'] + 1}"):
            f"k = {info['max_k'] + 1} is outside the allowed range 1..{info['max_k']}",
        ("--embedding=0.1,0.2,0.3",): rejected + "embedding has 3 values per row, but this "
                                                 f"index holds {info['dim']}-dimensional",
        ("--text=a red circle", "--tag=purple"): rejected + "unknown tag: purple",
        ("--like=no-such-image",): rejected + "unknown id: no-such-image",
    }
    runs = {args: cli(real, *args) for args in cases}
    for args, proc in runs.items():
        code, out, err = finish(proc)
        assert code == client.EXIT_RPC_ERROR and cases[args] in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (args, err)
    code, out, err = finish(cli(real, "--text=a red circle", "--k=2", "--json"))
    assert code == 0, err
    hits = json.loads(out)["queries"][0]["hits"]
    assert [h["id"] for h in hits] == [h.id for h in api.text_search("a red circle", k=2).hits[0]]

    url = f"{real['rest']}/v1/models/text_to_image:predict"
    status, body = http("POST", url, {"signature_name": "search", "inputs": {
        "sentences": [caption], "k": 3, "tag": "", "ids": []}})
    assert status == 200 and body["outputs"]["ids"][0] == [h.id for h in default.hits[0][:3]]
    status, body = http("POST", url, {"signature_name": "search", "inputs": {
        "sentences": [caption], "k": 0, "tag": "", "ids": []}})
    assert status == 400 and "k = 0 is outside the allowed range" in body["error"], body
    assert real["standin"].alive()
    assert len(api.text_search(caption, k=2).hits[0]) == 2
