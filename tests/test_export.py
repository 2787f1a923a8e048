"""Export for TF Serving: layout and versions, served embeddings = evaluation's, token-id identity,
warmup records, models.config, the op allow-list, and `.keras` loading in a fresh process."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers NormalizeUTF8 / CaseFoldUTF8 for loading)
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.export import layout, publish, served_encoders, served_model
from keras_instance.model.dual_path import build_text_encoder
from keras_instance.retrieval import embeddings
from keras_instance.text import tokenizer

# TF Serving links TF Text's op library into the model server: tensorflow_serving/model_servers/
# BUILD puts "@org_tensorflow_text//tensorflow_text:ops_lib" in SUPPORTED_TENSORFLOW_OPS (a
# dependency of server_lib; seen at tensorflow/serving commit 008c02c4). Of those ops the exports
# may use only the two that `tokenizer.tokenize` needs, which the project brief confirms are in the
# TF Text 2.20 that TF Serving 2.20 links.
ALLOWED_TF_TEXT_OPS = {"NormalizeUTF8", "CaseFoldUTF8"}
# Graph-internal ops that may be missing from tf.raw_ops in some TF versions.
ALLOWED_INTERNAL_OPS = {"StatefulPartitionedCall", "PartitionedCall", "NoOp", "Placeholder",
                        "Const", "Identity", "IdentityN", "VarHandleOp", "ReadVariableOp",
                        "_Arg", "_Retval", "DisableCopyOnRead"}


def saved(trained_run, name, version=1):
    return os.path.join(trained_run["exports"], name, str(version))


def test_layout_versions_and_atomic_rename(trained_run, tmp_path):
    for name in (served_model.IMAGE_MODEL, served_model.TEXT_MODEL):
        assert os.path.exists(os.path.join(saved(trained_run, name), "saved_model.pb"))
        assert os.path.exists(os.path.join(saved(trained_run, name), layout.WARMUP_FILE))
    exports = str(tmp_path / "exports")
    shutil.copytree(trained_run["exports"], exports)
    run = trained_run
    result = publish.export_encoders(run["config"], run["dual"], run["vocab"], exports)
    assert result["version"] == 2
    for name in (served_model.IMAGE_MODEL, served_model.TEXT_MODEL):
        assert sorted(os.listdir(os.path.join(exports, name))) == ["1", "2"], "no temp folder left"
    with pytest.raises(FileExistsError):
        publish.export_encoders(run["config"], run["dual"], run["vocab"], exports, version=2)
    # besides the models and models.config, only the release lock (empty once released)
    assert sorted(os.listdir(exports)) == [".lock", "image_encoder", "models.config",
                                           "text_encoder"]
    assert os.path.getsize(os.path.join(exports, ".lock")) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(os.path.join(exports, "text_encoder", "2")).st_mode & 0o777 == 0o777 & ~umask
    for name in ("model.keras", "image_encoder.keras", "text_encoder.keras"):
        assert os.path.exists(os.path.join(trained_run["config"].workdir, name))


def test_failed_save_leaves_no_version(trained_run, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    run = trained_run
    module = served_encoders.text_module(run["config"], run["dual"], run["vocab"])
    with pytest.raises(RuntimeError, match="disk full"):
        layout.save(module, str(tmp_path), 3)
    assert os.listdir(tmp_path / served_model.TEXT_MODEL) == []


def test_served_embeddings_equal_evaluation(trained_run, tmp_path):
    config, dual = trained_run["config"], trained_run["dual"]
    paths = [r.image_path for r in trained_run["test"]]
    # One JPEG besides the demo's PNGs.
    jpeg = str(tmp_path / "x.jpg")
    with open(jpeg, "wb") as f:
        f.write(layout.demo_jpeg(48, seed=5))
    paths.append(jpeg)
    expected = embeddings.embed_images(dual.image_encoder(), paths, config.image.image_size,
                                       flip_sum=True)
    model = tf.saved_model.load(saved(trained_run, served_model.IMAGE_MODEL))
    images = tf.constant([open(p, "rb").read() for p in paths])
    got = model.signatures["serving_default"](images=images)["embedding"].numpy()
    assert got.shape == (len(paths), config.model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    captions = [c for r in trained_run["test"] for c in r.captions][:20]
    captions += ["", "   ", "zzz qqq", "A RED circle, on the LEFT!"]
    tokens = tokenizer.encode_captions(captions, trained_run["vocab"], config.data.max_length)
    expected = embeddings.embed_token_ids(dual.text_encoder, tokens, shift_sum=True)
    model = tf.saved_model.load(saved(trained_run, served_model.TEXT_MODEL))
    got = model.signatures["serving_default"](sentences=tf.constant(captions))["embedding"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_test_feature_relu_serves_and_evaluates_the_post_relu_output(trained_run):
    """--test_feature=relu: the served modules and evaluation both use the branch's ReLU output."""
    with pytest.raises(ValueError, match="test_feature must be one of 'embedding', 'relu'"):
        trained_run["config"].replace(test_feature="pooled").validate()
    config = trained_run["config"].replace(test_feature="relu")
    dual, vocab = trained_run["dual"], trained_run["vocab"]
    paths = [r.image_path for r in trained_run["test"]][:6]
    relu = embeddings.config_image_embeddings(config, dual, paths)
    image_model = dual.image_encoder()
    pixels = tf.stack([pipeline.load_eval_image(tf.constant(p), config.image.image_size)
                       for p in paths])
    by_hand = sum(image_model(x, training=False)["relu"].numpy()
                  for x in (pixels, tf.image.flip_left_right(pixels)))
    np.testing.assert_allclose(relu, embeddings.l2_normalize(by_hand), atol=1e-5)
    assert (relu >= 0).all()
    pre_relu = embeddings.config_image_embeddings(trained_run["config"], dual, paths)
    assert np.abs(relu - pre_relu).max() > 1e-3
    images = tf.constant([open(p, "rb").read() for p in paths])
    module = served_encoders.image_module(config, dual)  # kept: tf.function holds it weakly
    served = module.serve(images)["embedding"].numpy()
    np.testing.assert_allclose(served, relu, atol=1e-5)

    captions = [c for r in trained_run["test"] for c in r.captions][:8]
    tokens = tokenizer.encode_captions(captions, vocab, config.data.max_length)
    relu = embeddings.config_token_embeddings(config, dual, tokens)
    assert (relu >= 0).all()
    module = served_encoders.text_module(config, dual, vocab)
    served = module.serve(tf.constant(captions))["embedding"].numpy()
    np.testing.assert_allclose(served, relu, atol=1e-5)


def test_bad_image_in_batch_is_invalid_argument(trained_run):
    model = tf.saved_model.load(saved(trained_run, served_model.IMAGE_MODEL))
    good = layout.demo_jpeg(32)
    for bad, words in ((b"not an image", "image"), (b"", "empty")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            model.signatures["serving_default"](images=tf.constant([good, bad]))
    ok = model.signatures["serving_default"](images=tf.constant([good]))["embedding"]
    assert ok.shape == (1, trained_run["config"].model.embed_dim)


TRICKY = ["Über Café", "über café's", "A man's DOG, isn't it?!", "''quoted'' words'",
          "ﬁne—dash…ellipsis", "tab\tand\nnewline", "", "   ", "\t\n", "ÜBER!!! CAFÉ???",
          "red,circle;left.", "naïve résumé 42"]


def test_token_ids_identical_to_training_front_end(trained_run, tmp_path):
    # The exported model with the demo vocabulary (tricky spellings of known words) …
    config, vocab = trained_run["config"], trained_run["vocab"]
    sentences = TRICKY + ["A RED circle, on the LEFT!", "Two   large-squares: blue & green."]
    model = tf.saved_model.load(saved(trained_run, served_model.TEXT_MODEL))
    np.testing.assert_array_equal(
        model.token_ids(tf.constant(sentences)).numpy(),
        tokenizer.encode_captions(sentences, vocab, config.data.max_length))
    # … and one whose vocabulary holds the non-ASCII and apostrophe words, so they are kept.
    words = ["über", "café", "café's", "man's", "dog", "isn't", "it", "quoted", "words", "fine",
             "dash", "ellipsis", "naïve", "résumé", "42", "tab", "and", "newline"]
    vocab = tokenizer.Vocabulary(words)
    encoder = build_text_encoder(len(vocab), 8, 4, (8, 8, 8, 8), (1, 1, 1, 1), "max", 4, 0.0)
    module = served_encoders.ServedTextEncoder(encoder, vocab, 8, shift_sum=True)
    path = layout.save(module, str(tmp_path), 1)
    loaded = tf.saved_model.load(path)
    expected = tokenizer.encode_captions(sentences, vocab, 8)
    assert (expected[0] == [1, 2] + [0] * 6).all() and (expected != 0).sum() > 20
    np.testing.assert_array_equal(loaded.token_ids(tf.constant(sentences)).numpy(), expected)
    by_signature = loaded.signatures["token_ids"](sentences=tf.constant(sentences))["token_ids"]
    np.testing.assert_array_equal(by_signature.numpy(), expected)
    got = loaded.signatures["serving_default"](sentences=tf.constant(sentences))["embedding"]
    np.testing.assert_allclose(got.numpy(), embeddings.embed_token_ids(encoder, expected),
                               atol=1e-5)


def test_warmup_requests_parse_and_run(trained_run):
    from tensorflow_serving.apis import prediction_log_pb2
    for name, key in ((served_model.IMAGE_MODEL, "images"),
                      (served_model.TEXT_MODEL, "sentences")):
        path = os.path.join(saved(trained_run, name), layout.WARMUP_FILE)
        logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(path)]
        assert len(logs) >= 2
        model = tf.saved_model.load(saved(trained_run, name))
        for log in logs:
            request = log.predict_log.request
            assert request.model_spec.name == name
            assert request.model_spec.signature_name == "serving_default"
            inputs = tf.make_ndarray(request.inputs[key])
            out = model.signatures["serving_default"](**{key: tf.constant(inputs)})
            assert out["embedding"].shape == (len(inputs), trained_run["config"].model.embed_dim)


def test_models_config_parses(trained_run):
    from tensorflow_serving.config import model_server_config_pb2
    with open(os.path.join(trained_run["exports"], "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert set(entries) == {"image_encoder", "text_encoder"}
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}"
        assert entry.model_platform == "tensorflow"


def graph_ops(saved_model_dir):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta in proto.meta_graphs:
        library = meta.graph_def.library
        functions = {f.signature.name for f in library.function}
        ops |= {n.op for n in meta.graph_def.node}
        for function in library.function:
            ops |= {n.op for n in function.node_def}
        ops -= functions  # calls of the library's own functions
    return ops


def test_op_allow_list(trained_run):
    core = set(dir(tf.raw_ops))
    for name in (served_model.IMAGE_MODEL, served_model.TEXT_MODEL):
        ops = graph_ops(saved(trained_run, name))
        assert "DecodeImage" in ops or "NormalizeUTF8" in ops
        outside = sorted(op for op in ops
                         if op not in core | ALLOWED_INTERNAL_OPS | ALLOWED_TF_TEXT_OPS)
        assert not outside, f"{name} uses ops outside core TF + TF Serving's TF Text: {outside}"
    # the default --resize_method=bicubic_antialias: tf.image.resize's antialiased bicubic is the
    # core op ScaleAndTranslate (a kernel of stock TF Serving, as every core op), no allow-listing
    assert "ScaleAndTranslate" in graph_ops(saved(trained_run, served_model.IMAGE_MODEL))
    assert ALLOWED_TF_TEXT_OPS <= graph_ops(saved(trained_run, served_model.TEXT_MODEL))


@pytest.mark.slow
def test_keep_aspect_served_embeddings_equal_evaluation_on_mixed_aspect_ratios(tmp_path):
    """docs/method.md's test geometry (short side kept, every window of the map summed) in the
    served graph, for one request mixing 3:2, 2:3, square and very wide images."""

    import keras
    from PIL import Image

    from keras_instance.model.dual_path import build_dual_path
    config = Config.flat(backbone="mobilenet_v2", backbone_weights=None, image_size=32,
                    image_head_units=(16,), word_dim=8, text_widths=(8, 16, 16, 32),
                    text_blocks=(1, 1, 1, 1), embed_dim=16, max_length=8,
                    test_geometry="keep_aspect", test_flip_sum=True).validate()
    keras.utils.set_random_seed(4)
    dual = build_dual_path(config, 5, 20, backbone_weights=None)
    rng = np.random.default_rng(2)
    paths = []
    for i, (h, w) in enumerate([(40, 70), (70, 40), (50, 50), (33, 100), (41, 69)]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    evaluated = embeddings.config_image_embeddings(config, dual, paths, batch_size=2)
    version = layout.save(served_encoders.image_module(config, dual), str(tmp_path / "exports"), 1)
    served = tf.saved_model.load(version).signatures["serving_default"](
        images=tf.constant([open(p, "rb").read() for p in paths]))["embedding"].numpy()
    np.testing.assert_allclose(served, evaluated, atol=1e-5)
    # the geometry matters: squashing the 3:2 image to 32 × 32 embeds it differently
    squashed = embeddings.config_image_embeddings(
        config.replace(test_geometry="squash"), dual, paths[:1])
    assert float(squashed[0] @ evaluated[0]) < 0.999


# One fresh process for what a user does without the test session's imports, in this order:
# load an encoder before `import keras_instance` (the error must say what to import), run
# README's encoders example as written (it makes that import itself), then load the three .keras
# files with safe_mode and embed the same raw inputs the served SavedModels get.
FRESH_PROCESS = r"""
import contextlib, io, json, sys, traceback
import numpy as np
import keras
workdir, sentences_file, inputs_file, readme_file, *paths = sys.argv[1:]
assert "keras_instance" not in sys.modules
try:
    keras.models.load_model(f"{workdir}/text_encoder.keras")
    without_import = None
except Exception as e:  # as the traceback's last line shows it
    without_import = traceback.format_exception_only(e)[-1].strip().splitlines()[-1]
readme = io.StringIO()
with contextlib.redirect_stdout(readme):
    exec(compile(open(readme_file).read(), "README example", "exec"), {"__name__": "__main__"})
import keras_instance  # the one import the .keras files need
image = keras.models.load_model(f"{workdir}/image_encoder.keras", safe_mode=True)
text = keras.models.load_model(f"{workdir}/text_encoder.keras", safe_mode=True)
sentences = [line for line in open(sentences_file, encoding="utf-8").read().split("\n") if line]
image_emb = np.concatenate([image(image.pixels(open(p, "rb").read())).numpy() for p in paths])
text_emb = text(text.token_ids(sentences)).numpy()
model = keras.models.load_model(f"{workdir}/model.keras")  # the training model, safe_mode too
data = np.load(inputs_file)
out = model.predict({"image": data["image"], "tokens": data["tokens"]}, verbose=0)
np.savez("out.npz", image=image_emb, text=text_emb, **{"model_" + k: v for k, v in out.items()})
json.dump({"without_import": without_import, "readme_stdout": readme.getvalue()},
          open("out.json", "w"))
"""


def _readme_example(trained_run):
    """README's encoders example with its paths replaced by the session's run and one image."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")).read()
    block = readme.split("<!-- encoders example -->")[1].split("<!-- end encoders example -->")[0]
    code = block.split("```python")[1].split("```")[0]
    assert "runs/mine" in code and "data/mine/images/dogs.jpg" in code, code
    return code.replace("runs/mine", trained_run["config"].workdir).replace(
        "data/mine/images/dogs.jpg", trained_run["test"][0].image_path)


@pytest.fixture(scope="module")
def fresh_process(trained_run, tmp_path_factory):
    """FRESH_PROCESS run once on the session's run: its inputs and what it wrote."""
    folder = tmp_path_factory.mktemp("fresh_process")
    paths = [r.image_path for r in trained_run["test"][:4]]
    sentences = ([r.captions[0] for r in trained_run["test"][:4]]
                 + ["Ünïcode, punctuation!  and a DOG"])
    (folder / "sentences.txt").write_text("\n".join(sentences), encoding="utf-8")
    (folder / "readme_example.py").write_text(_readme_example(trained_run), encoding="utf-8")
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32),
              "tokens": tokenizer.encode_captions(sentences[:3], trained_run["vocab"],
                                             trained_run["config"].data.max_length)}
    np.savez(folder / "in.npz", **inputs)
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, trained_run["config"].workdir,
                           str(folder / "sentences.txt"), str(folder / "in.npz"),
                           str(folder / "readme_example.py"), *paths],
                          cwd=str(folder), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(folder / "out.json") as f:
        said = json.load(f)
    return dict(paths=paths, sentences=sentences, inputs=inputs, said=said,
                out=dict(np.load(folder / "out.npz")))


def test_keras_files_load_in_a_fresh_process_and_give_the_served_embeddings(trained_run,
                                                                           fresh_process):
    """image_encoder.keras / text_encoder.keras, loaded with safe_mode in a new process with only
    `import keras_instance`, equal the served SavedModels on the same raw inputs; model.keras
    (the training model) gives the in-process outputs."""
    got, paths, sentences = fresh_process["out"], fresh_process["paths"], fresh_process["sentences"]
    image_model = tf.saved_model.load(saved(trained_run, served_model.IMAGE_MODEL))
    text_model = tf.saved_model.load(saved(trained_run, served_model.TEXT_MODEL))
    served_images = image_model.signatures["serving_default"](
        images=tf.constant([open(p, "rb").read() for p in paths]))["embedding"].numpy()
    served_text = text_model.signatures["serving_default"](
        sentences=tf.constant(sentences))["embedding"].numpy()
    np.testing.assert_allclose(got["image"], served_images, atol=1e-5)
    np.testing.assert_allclose(got["text"], served_text, atol=1e-5)
    expected = trained_run["dual"].full_model()(fresh_process["inputs"], training=False)
    for key, value in expected.items():
        np.testing.assert_allclose(got["model_" + key], np.asarray(value), atol=1e-5)


def test_loading_an_encoder_without_the_import_says_what_to_import(fresh_process):
    last = fresh_process["said"]["without_import"]
    assert last and last.startswith("TypeError: Could not locate class 'TextEncoder'"), last
    # right after Keras' own fixed ~340-character preamble (it was at character 766)
    assert "'load_with': 'import keras_instance'" in last[:450], last


def test_readme_python_example_runs(fresh_process):
    """README's encoders example, run as written (before anything else imported keras_instance)
    on the session's run and one of its images: it prints the cosine similarity."""
    similarity = float(fresh_process["said"]["readme_stdout"].strip().splitlines()[-1])
    assert -1.0 <= similarity <= 1.0 and similarity != 0.0
