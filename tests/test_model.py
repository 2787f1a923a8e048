"""Dual-path model on tiny sizes: shared classifier, causal text CNN, backbones, trainer groups."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.model.backbones import PixelPreprocess, build_backbone
from keras_instance.model.dual_path import build_dual_path, build_text_encoder
from keras_instance.model.text_cnn import WordEmbedding
from keras_instance.training import step

MOBILENET_WEIGHTS = (Path(__file__).resolve().parents[1].parent
                     / "shared/weights/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")

EMBED, CLASSES, VOCAB, LENGTH = 16, 5, 20, 8


def tiny_config(**overrides):
    fields = dict(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None, image_size=32,
                  image_head_units=(16,), text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1),
                  embed_dim=EMBED, word_dim=8, max_length=LENGTH, dropout=0.5)
    fields.update(overrides)
    return Config.flat(**fields)


@pytest.fixture(scope="module")
def dual():
    keras.utils.set_random_seed(0)
    return build_dual_path(tiny_config(), CLASSES, VOCAB, backbone_weights=None)


def random_inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 255, size=(batch, 32, 32, 3)).astype(np.float32),
            "tokens": rng.integers(1, VOCAB, size=(batch, LENGTH)).astype(np.int32)}


# ----------------------------------------------------------------------------- shared classifier

def test_an_unknown_image_input_names_the_allowed_ones(dual):
    with pytest.raises(ValueError, match="image_input must be one of .*'image_features'"):
        dual.training_model("image_feature")


@pytest.mark.parametrize("image_input", ["image", "image_features"])
def test_training_model_has_one_shared_classifier(dual, image_input):
    model = dual.training_model(image_input)
    w = [v for v in model.variables if tuple(v.shape) == (EMBED, CLASSES)]
    assert len(w) == 1
    assert w[0] is dual.classifier.kernel
    # the authors' fc_img / fc_txt share 'fcsharef' AND 'fcshareb': one bias, also shared
    b = [v for v in model.variables if tuple(v.shape) == (CLASSES,)]
    assert len(b) == 1 and b[0] is dual.classifier.bias


def test_classifier_init_is_the_authors_uniform_times_a_tenth():
    keras.utils.set_random_seed(3)
    from keras_instance.model.dual_path import shared_classifier
    layer = shared_classifier(4000, init="authors")
    layer.build((None, 300))
    w = layer.kernel.numpy()
    bound = 0.1 * np.sqrt(3 / 300)            # MatConvNet: U(±sqrt(3/fan_in)), × 0.1
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.var(), 0.01 / 300, rtol=0.02)
    np.testing.assert_array_equal(layer.bias.numpy(), 0.0)
    he = shared_classifier(4000, init="he", bias=False)
    he.build((None, 300))
    np.testing.assert_allclose(he.kernel.numpy().var(), 0.02 / 300, rtol=0.02)
    assert not he.use_bias


def test_changing_classifier_changes_both_branches(dual):
    model = dual.training_model()
    x = random_inputs()
    out = model(x, training=False)
    w = dual.classifier.kernel.numpy()
    bias = dual.classifier.bias.numpy()
    # Logits are exactly feature · W + b for both branches (dropout off at inference).
    np.testing.assert_allclose(out["image_logits"], out["image_relu"].numpy() @ w + bias,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["text_logits"], out["text_relu"].numpy() @ w + bias,
                               rtol=1e-4, atol=1e-5)
    try:
        dual.classifier.kernel.assign(w + 1.0)
        new = model(x, training=False)
        for branch in ("image", "text"):
            delta = new[f"{branch}_logits"].numpy() - out[f"{branch}_logits"].numpy()
            expected = out[f"{branch}_relu"].numpy().sum(axis=1, keepdims=True)  # feature · 1
            np.testing.assert_allclose(delta, np.repeat(expected, CLASSES, axis=1),
                                       rtol=1e-4, atol=1e-4)
            assert np.abs(delta).max() > 1e-3
            np.testing.assert_array_equal(new[f"{branch}_relu"], out[f"{branch}_relu"])
    finally:
        dual.classifier.kernel.assign(w)


def test_training_model_outputs(dual):
    out = dual.training_model()(random_inputs(batch=2), training=False)
    assert set(out) == {"image_logits", "text_logits", "image_relu", "text_relu"}
    assert tuple(out["image_logits"].shape) == (2, CLASSES)
    assert tuple(out["text_logits"].shape) == (2, CLASSES)
    assert tuple(out["image_relu"].shape) == (2, EMBED)
    assert float(tf.reduce_min(out["text_relu"])) >= 0.0


# ----------------------------------------------------------------------------- text branch

def test_one_by_two_conv_is_causal(dual):
    enc = dual.text_encoder
    probe = keras.Model(enc.input, enc.get_layer("text_s1b1_b_bn").output)
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, VOCAB, size=(8, LENGTH)).astype(np.int32)
    t = 4
    changed = tokens.copy()
    changed[:, t] = (tokens[:, t] % (VOCAB - 1)) + 1  # a different non-padding id
    assert np.all(changed[:, t] != tokens[:, t])
    a = probe(tokens, training=False).numpy()
    b = probe(changed, training=False).numpy()
    assert a.shape[1] == LENGTH
    np.testing.assert_array_equal(a[:, :t], b[:, :t])            # nothing before t sees t
    np.testing.assert_array_equal(a[:, t + 2:], b[:, t + 2:])    # kernel spans t−1 and t only
    assert np.abs(a[:, t] - b[:, t]).max() > 1e-6                # position t sees itself
    assert np.abs(a[:, t + 1] - b[:, t + 1]).max() > 1e-6        # t+1 sees its left neighbour


# Which word positions can change output position i after each stage of the authors' text CNN
# (blocks 3, 4, 6, 1; 32 words), derived by hand from resnet52_new_hope_word2_pool.m: every block
# has one 1×2 conv with one position of LEFT padding, so a stride-1 block adds position i−1; the
# first block of stages 2 and 3 strides that 1×2 conv (pad [0 0 1 0], stride 2), so its output j
# sees positions 2j−1 and 2j of its input, and its 1×1 projection sees 2j.
#   stage 1 (32 long), 3 blocks:       i → [i−3, i]
#   stage 2 (16 long), 1 + 3 blocks:   j → {2j−1, 2j} of stage 1 → [2j−4, 2j]; 3 more → [2j−10, 2j]
#   stage 3 (8 long),  1 + 5 blocks:   k → {2k−1, 2k} of stage 2 → [4k−12, 4k]; 5 more → [4k−32, 4k]
#   stage 4 (8 long),  1 block:        k → [k−1, k] of stage 3 → [4k−36, 4k]
# all clipped to [0, 31]. (With the stride on the first 1×1 conv, "v1", stage 2's first block
# saw {2j−2, 2j} of stage 1: [2j−5, 2j], then [2j−11, 2j]; odd positions never reached its
# main path.)
AUTHORS_RECEPTIVE_FIELDS = {
    1: lambda i: range(max(i - 3, 0), i + 1),
    2: lambda j: range(max(2 * j - 10, 0), 2 * j + 1),
    3: lambda k: range(max(4 * k - 32, 0), 4 * k + 1),
    4: lambda k: range(max(4 * k - 36, 0), 4 * k + 1),
}


def receptive_fields(layout, blocks=(3, 4, 6, 1), length=32):
    """{stage: [set of input positions that change output position i, for each i]}."""
    from keras_instance.model.text_cnn import residual_stages
    keras.utils.set_random_seed(5)
    words = keras.Input(shape=(length, 6))
    stages = residual_stages(words, (32, 32, 32, 32), blocks, layout=layout)  # wide: no dead path
    model = keras.Model(words, stages)
    x = tf.constant(np.random.default_rng(0).normal(size=(16, length, 6)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = model(x, training=False)
        picked = {(s, i): out[:, i] for s, out in enumerate(outputs, start=1)
                  for i in range(out.shape[1])}
    fields = {s: [] for s in range(1, len(outputs) + 1)}
    for (s, i), y in picked.items():
        grad = np.abs(tape.gradient(y, x).numpy()).sum(axis=(0, 2))
        fields[s].append(set(np.flatnonzero(grad > 0).tolist()))
    return fields


@pytest.mark.slow
def test_text_cnn_receptive_fields_match_the_authors_net():
    fields = receptive_fields("authors")
    assert [len(fields[s]) for s in (1, 2, 3, 4)] == [32, 16, 8, 8]
    for stage, expected in AUTHORS_RECEPTIVE_FIELDS.items():
        for i, got in enumerate(fields[stage]):
            assert got == set(expected(i)), (stage, i, sorted(got))
    assert max(fields[4][-1]) == 28  # the last three words never reach stage 4 (as theirs)
    old = receptive_fields("v1")
    assert old[2][5] == set(range(0, 11)) and fields[2][5] == set(range(0, 11))
    assert old[2][8] == set(range(5, 17)) != fields[2][8] == set(range(6, 17))


def test_old_text_layout_runs_still_build_as_trained(tmp_path):
    """A config.json from before the authors' layout (no config_version) rebuilds the v1 net."""
    import json
    config = tiny_config()
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_flat().items()}
    for key in ("config_version", "text_layout", "classifier_bias", "classifier_init",
                "kernel_initializer", "weight_decay_on", "vgg_fc7", "test_geometry"):
        raw.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    old = Config.load(str(tmp_path))
    assert (old.text.text_layout, old.model.classifier_bias,
            old.test.test_geometry) == ("v1", False, "squash")
    enc = build_dual_path(old, CLASSES, VOCAB, backbone_weights=None).text_encoder
    assert enc.get_layer("text_s1b1_a").filters == 2           # width/4
    assert enc.get_layer("text_s2b1_a").strides == (2,)        # stride on the 1×1 conv
    assert enc.get_layer("text_s2b1_b").strides == (1,)
    new = build_dual_path(tiny_config(), CLASSES, VOCAB, backbone_weights=None).text_encoder
    assert new.get_layer("text_s2b1_a").strides == (1,)
    assert new.get_layer("text_s2b1_b").strides == (2,)


def test_word_embedding_padding_is_bias():
    layer = WordEmbedding(6, 4)
    layer.build((None, 3))
    emb = np.arange(24, dtype=np.float32).reshape(6, 4) / 10
    bias = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    layer.embeddings.assign(emb)
    layer.bias.assign(bias)
    out = layer(np.array([[0, 3, 0], [5, 0, 1]], np.int32)).numpy()
    np.testing.assert_array_equal(out[0, 0], bias)
    np.testing.assert_array_equal(out[0, 2], bias)
    np.testing.assert_array_equal(out[1, 1], bias)
    np.testing.assert_allclose(out[0, 1], emb[3] + bias, rtol=1e-6)
    np.testing.assert_allclose(out[1, 0], emb[5] + bias, rtol=1e-6)
    np.testing.assert_allclose(out[1, 2], emb[1] + bias, rtol=1e-6)
    assert WordEmbedding.from_config(layer.get_config()).vocab_size == 6


def test_stages_two_and_three_halve_the_length():
    enc = build_text_encoder(VOCAB, 16, 8, (8, 16, 16, 32), (2, 2, 1, 2), "max", EMBED, 0.1)
    length = {name: enc.get_layer(name).output.shape[1] for name in
              ("word_bn", "text_s1b1_out", "text_s1b2_out", "text_s2b1_out", "text_s2b2_out",
               "text_s3b1_out", "text_s4b1_out", "text_s4b2_out")}
    assert length == {"word_bn": 16, "text_s1b1_out": 16, "text_s1b2_out": 16,
                      "text_s2b1_out": 8, "text_s2b2_out": 8, "text_s3b1_out": 4,
                      "text_s4b1_out": 4, "text_s4b2_out": 4}
    widths = {name: enc.get_layer(name).output.shape[-1] for name in
              ("text_s1b1_out", "text_s2b1_out", "text_s3b1_out", "text_s4b1_out")}
    assert widths == {"text_s1b1_out": 8, "text_s2b1_out": 16, "text_s3b1_out": 16,
                      "text_s4b1_out": 32}
    # Bottlenecks: width/4 normally, full width in the first block of stages 2..4, width/2 in
    # the network's first block (the authors' fc2_1_*: 300 → 128 → 256).
    assert enc.get_layer("text_s1b1_a").filters == 4
    assert enc.get_layer("text_s1b2_a").filters == 2
    assert enc.get_layer("text_s2b1_a").filters == 16
    assert enc.get_layer("text_s2b2_a").filters == 4
    assert enc.get_layer("text_s4b1_a").filters == 32


@pytest.mark.parametrize("pooling, reduce", [("max", np.max), ("avg", np.mean)])
def test_text_pooling_flag(pooling, reduce):
    enc = build_text_encoder(VOCAB, LENGTH, 8, (8, 16, 16, 32), (1, 1, 1, 1), pooling, EMBED, 0.1)
    probe = keras.Model(enc.input, [enc.get_layer("text_s4b1_out").output,
                                    enc.get_layer("text_pool").output])
    tokens = np.random.default_rng(2).integers(0, VOCAB, size=(3, LENGTH)).astype(np.int32)
    seq, pooled = (t.numpy() for t in probe(tokens, training=False))
    np.testing.assert_allclose(pooled, reduce(seq, axis=1), rtol=1e-5, atol=1e-6)
    other = np.mean if reduce is np.max else np.max
    assert not np.allclose(pooled, other(seq, axis=1), atol=1e-6)


def test_text_pooling_bad_value():
    with pytest.raises(ValueError, match="pooling"):
        build_text_encoder(VOCAB, LENGTH, 8, (8, 16, 16, 32), (1, 1, 1, 1), "mean", EMBED, 0.1)
    with pytest.raises(ValueError, match="same length"):
        build_text_encoder(VOCAB, LENGTH, 8, (8, 16), (1, 1, 1), "max", EMBED, 0.1)


# ----------------------------------------------------------------------------- backbones

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside keras' save_weights
def test_tiny_cnn_backbone_shape_and_weights_file(tmp_path):
    model = build_backbone("tiny_cnn", None, (32, 32, 3))
    assert tuple(model.output.shape) == (None, 2 * 2 * 32)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, 128)
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(str(path))
    again = build_backbone("tiny_cnn", str(path), (32, 32, 3))
    np.testing.assert_allclose(again(x, training=False), y, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ImageNet"):
        build_backbone("tiny_cnn", "imagenet", (32, 32, 3))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="resnet51"):
        build_backbone("resnet51", None)


def test_missing_weights_file_names_path(tmp_path):
    missing = tmp_path / "nope" / "weights.h5"
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("mobilenet_v2", str(missing), (96, 96, 3))
    assert str(missing) in str(err.value)


@pytest.mark.skipif(not MOBILENET_WEIGHTS.exists(), reason=f"{MOBILENET_WEIGHTS} not present")
def test_mobilenet_v2_loads_real_weights():
    x = np.random.default_rng(3).uniform(0, 255, size=(2, 96, 96, 3)).astype(np.float32)
    loaded = build_backbone("mobilenet_v2", str(MOBILENET_WEIGHTS), (96, 96, 3))
    assert tuple(loaded.output.shape) == (None, 1280)
    y = loaded(x, training=False).numpy()
    random = build_backbone("mobilenet_v2", None, (96, 96, 3))
    assert not np.allclose(y, random(x, training=False).numpy(), atol=1e-3)
    # Same as keras.applications' own model with the file loaded and its own preprocessing.
    ref = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                         weights=None, pooling="avg")
    ref.load_weights(str(MOBILENET_WEIGHTS))
    expected = ref(keras.applications.mobilenet_v2.preprocess_input(x.copy()), training=False)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_weights_file_of_wrong_architecture_names_path(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    build_backbone("tiny_cnn", None, (32, 32, 3)).save_weights(str(path))
    with pytest.raises(ValueError) as err:
        build_backbone("mobilenet_v2", str(path), (32, 32, 3))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("mode, reference", [
    ("caffe", keras.applications.resnet50.preprocess_input),
    ("tf", keras.applications.mobilenet_v2.preprocess_input),
    ("unit", lambda x: x / 255.0),
])
def test_pixel_preprocess_matches_keras_applications(mode, reference):
    x = np.random.default_rng(4).uniform(0, 255, size=(2, 5, 4, 3)).astype(np.float32)
    x[0, 0, 0] = [255.0, 0.0, 10.0]
    got = PixelPreprocess(mode)(x).numpy()
    np.testing.assert_allclose(got, reference(x.copy()), rtol=1e-5, atol=1e-4)


def test_pixel_preprocess_caffe_by_hand_and_bad_mode():
    got = PixelPreprocess("caffe")(np.array([[[[10.0, 20.0, 30.0]]]], np.float32)).numpy()
    np.testing.assert_allclose(got[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-6)
    layer = PixelPreprocess("tf")
    assert PixelPreprocess.from_config(layer.get_config()).mode == "tf"
    with pytest.raises(ValueError, match="torch"):
        PixelPreprocess("torch")


# ----------------------------------------------------------------------------- trainer

MULTIPLIERS = {"new": 0.1, "classifier": 0.01, "word": 0.001, "bn_gamma": 0.2, "bn_beta": 0.1,
               "backbone": 0.05}


def test_variable_groups(dual):
    dual.training_model()  # builds the shared classifier
    groups = step.variable_groups(dual)
    enc = dual.text_encoder
    assert groups[id(dual.classifier.kernel)] == "classifier"
    word = enc.get_layer("word_embedding")
    assert groups[id(word.embeddings)] == "word"
    assert groups[id(word.bias)] == "word"
    for name in ("word_bn", "text_s1b1_a_bn", "text_s2b1_proj_bn", "text_embedding"):
        bn = enc.get_layer(name)
        assert groups[id(bn.gamma)] == "bn_gamma", name
        assert groups[id(bn.beta)] == "bn_beta", name
    head_bn = dual.image_head.get_layer("image_fc1_bn")
    assert groups[id(head_bn.gamma)] == "bn_gamma"
    assert groups[id(head_bn.beta)] == "bn_beta"
    assert groups[id(enc.get_layer("text_s1b1_b").kernel)] == "new"
    assert groups[id(dual.image_head.get_layer("image_fc1").kernel)] == "new"
    assert groups[id(dual.image_head.get_layer("image_fc2").kernel)] == "new"
    kinds = {"kernel": "backbone_kernel", "gamma": "backbone_gamma", "beta": "backbone_beta",
             "moving_mean": "backbone", "moving_variance": "backbone"}
    for v in dual.backbone.weights:   # including the backbone's own BN layers
        want = "backbone_stem" if v.path == "conv1/kernel" else kinds[v.name]
        assert groups[id(v)] == want, v.path
    assert any(v is dual.backbone.get_layer("conv1_bn").gamma for v in dual.backbone.weights)
    # Every trainable variable of the full model belongs to some group.
    for v in dual.training_model().trainable_variables:
        assert id(v) in groups, v.path


def make_trainer(dual, weight_decay=0.5, weight_decay_on="all", negatives="hardest_of_pool"):
    return step.InstanceTrainer(dual, image_input="image_features",
                                       loss_weights=(2.0, 1.0, 0.1), lr_multipliers=MULTIPLIERS,
                                       weight_decay=weight_decay, negatives=negatives,
                                       weight_decay_on=weight_decay_on)


@pytest.mark.parametrize("decay_on", ["all", "kernels"])
def test_adjust_multiplies_and_decays(dual, decay_on):
    """all (the authors'): every parameter decays, BN γ/β and biases too; kernels: the old rule."""
    trainer = make_trainer(dual, weight_decay=0.5, weight_decay_on=decay_on)
    enc, head = dual.text_encoder, dual.image_head
    word = enc.get_layer("word_embedding")
    bn = enc.get_layer("text_s1b1_a_bn")
    everything = decay_on == "all"
    cases = [  # variable, group multiplier, decayed?
        (dual.classifier.kernel, 0.01, True),
        (dual.classifier.bias, 0.02, everything),   # a bias: twice its layer's rate
        (word.embeddings, 0.001, True),
        (word.bias, 0.001, everything),
        (bn.gamma, 0.2, everything),
        (bn.beta, 0.1, everything),
        (enc.get_layer("text_s1b1_b").kernel, 0.1, True),
        (head.get_layer("image_fc1").kernel, 0.1, True),
    ]
    saved = [v.numpy() for v, _, _ in cases]
    try:
        rng = np.random.default_rng(0)
        variables, grads, expected = [], [], []
        for v, mult, decayed in cases:
            w = rng.normal(size=tuple(v.shape)).astype(np.float32)
            g = rng.normal(size=tuple(v.shape)).astype(np.float32)
            v.assign(w)
            variables.append(v)
            grads.append(tf.constant(g))
            expected.append((g + 0.5 * w * decayed) * mult)
        variables.append(bn.gamma)
        grads.append(None)
        out = trainer._adjust(grads, variables)
        assert len(out) == len(variables) and out[-1] is None
        for got, exp, (v, _, _) in zip(out, expected, cases):
            np.testing.assert_allclose(np.asarray(got), exp, rtol=1e-5, atol=1e-7,
                                       err_msg=v.path)
        # Hand values on one element: classifier (g + wd·w)·0.01 with g = 2, w = 4 → 0.04.
        k = dual.classifier.kernel
        k.assign(np.full(tuple(k.shape), 4.0, np.float32))
        (g,) = trainer._adjust([tf.fill(k.shape, 2.0)], [k])
        np.testing.assert_allclose(g.numpy(), 0.04, rtol=1e-6)
    finally:
        for (v, _, _), w in zip(cases, saved):
            v.assign(w)


def test_adjust_word_lookup_sparse_gradient(dual):
    trainer = make_trainer(dual, weight_decay=0.0)
    word = dual.text_encoder.get_layer("word_embedding")
    shape = tuple(word.embeddings.shape)
    sparse = tf.IndexedSlices(values=tf.ones((2, shape[1])), indices=tf.constant([3, 3]),
                              dense_shape=tf.constant(shape))
    (g,) = trainer._adjust([sparse], [word.embeddings])
    expected = np.zeros(shape, np.float32)
    expected[3] = 2.0 * 0.001
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-6)


def _pool_batch(dual, b=4, k=3, seed=6):
    rng = np.random.default_rng(seed)
    inputs = {"image_features": tf.constant(rng.normal(size=(b, dual.feature_dim)), tf.float32),
              "tokens": tf.constant(rng.integers(1, VOCAB, size=(b, LENGTH)), tf.int32),
              "pool_tokens": tf.constant(rng.integers(1, VOCAB, size=(b, k, LENGTH)), tf.int32),
              "pool_labels": tf.constant(rng.integers(0, CLASSES, size=(b, k)), tf.int32)}
    return inputs, tf.constant([0, 1, 2, 3][:b])


def test_trainer_groups_cover_network_and_losses_combine(dual):
    """The authors' RankLoss: hinges summed over the B/2 anchors, everything divided by B."""
    trainer = make_trainer(dual)
    for v in trainer.network.trainable_variables:
        assert id(v) in trainer._groups, v.path
    inputs, labels = _pool_batch(dual)
    tokens, text_labels = trainer.text_batch(inputs, labels)
    total, out, terms = trainer.compute_losses(inputs, labels, tokens, text_labels,
                                               training=False)
    assert tuple(terms["rank_loss"].shape) == (2,)  # anchors 0 and 2
    combo = (2.0 * terms["rank_loss"].numpy().sum() + terms["image_loss"].numpy().sum()
             + 0.1 * terms["text_loss"].numpy().sum()) / 4
    np.testing.assert_allclose(float(total), combo, rtol=1e-5)
    assert tuple(out["image_logits"].shape) == (4, CLASSES)
    assert np.all(np.isfinite(terms["rank_loss"].numpy())) and terms["rank_loss"].numpy().min() > 0


def test_hardest_of_pool_mines_in_test_mode_and_trains_the_negatives(dual):
    """Odd rows of the text batch are the anchors' hardest pool captions (test-mode features,
    an instance outside the batch), with their own class for the text instance loss."""
    trainer = make_trainer(dual)
    inputs, labels = _pool_batch(dual, seed=9)
    tokens, text_labels = trainer.text_batch(inputs, labels)
    tokens, text_labels = tokens.numpy(), text_labels.numpy()
    pool = inputs["pool_tokens"].numpy().reshape(-1, LENGTH)
    pool_labels = inputs["pool_labels"].numpy().reshape(-1)
    pool_f = dual.text_encoder(pool, training=False)["relu"].numpy()
    pool_f /= np.linalg.norm(pool_f, axis=1, keepdims=True)
    for anchor in (0, 2):
        image = dual.image_head(inputs["image_features"][anchor:anchor + 1],
                                training=False)["relu"].numpy()[0]
        scores = pool_f @ (image / np.linalg.norm(image))
        scores[np.isin(pool_labels, labels.numpy())] = -np.inf  # no image of the batch
        assert np.isfinite(scores).any()
        best = int(np.argmax(scores))
        np.testing.assert_array_equal(tokens[anchor + 1], pool[best])
        assert text_labels[anchor + 1] == pool_labels[best]
        np.testing.assert_array_equal(tokens[anchor], inputs["tokens"].numpy()[anchor])
        assert text_labels[anchor] == int(labels[anchor])


def test_random_negatives_come_from_the_pipeline(dual):
    trainer = make_trainer(dual, negatives="random")
    inputs, labels = _pool_batch(dual)
    neg = np.arange(4 * LENGTH, dtype=np.int32).reshape(4, LENGTH) % VOCAB
    inputs.update(neg_tokens=tf.constant(neg), neg_labels=tf.constant([4, 3, 1, 0]))
    tokens, text_labels = trainer.text_batch(inputs, labels)
    np.testing.assert_array_equal(tokens.numpy()[1], neg[0])
    np.testing.assert_array_equal(tokens.numpy()[3], neg[2])
    assert list(text_labels.numpy()) == [0, 4, 2, 1]


def test_a_run_folder_from_before_the_authors_layout_loads_and_embeds_the_same(tmp_path):
    """tests/fixtures/v1_run was written by the code of commit 24cde59 (text CNN strided on its
    1×1 conv, no classifier bias, config.json without config_version), with the embeddings that
    code gave: today's code must rebuild that network and give the same embeddings."""
    import shutil

    from keras_instance import run_folder
    fixture = Path(__file__).parent / "fixtures" / "v1_run"
    run_dir = tmp_path / "v1_run"
    shutil.copytree(fixture, run_dir)
    run = run_folder.load_trained(str(run_dir))
    assert run.config.text.text_layout == "v1" and not run.config.model.classifier_bias
    expected = np.load(run_dir / "expected.npz")
    image = run.dual.image_encoder()(expected["images"], training=False)["embedding"]
    text = run.dual.text_encoder(expected["tokens"], training=False)["embedding"]
    np.testing.assert_allclose(image.numpy(), expected["image_embedding"], atol=1e-6)
    np.testing.assert_allclose(text.numpy(), expected["text_embedding"], atol=1e-6)
