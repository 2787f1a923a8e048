"""CUHK-PEDES geometry as the authors run it (issue 23, item 2): `--squash_to`.

Their dataset/CUHK-PEDES-prepare/resize_image.m squashes every photo to 256 × 256
(`imresize(imread(img), [256, 256])`, written to imgs_256/, which prepare_imdb.m's image list
points at); train_cuhk_Rankloss_shift.m's getBatch crops 224 px from those squares
(`vl_imreadjpeg(..., 'Resize', [224, 224], 'CropSize', [0.8, 1], 'CropAnisotropy', [3/4, 4/3])`),
and test_cuhk/extract_pic_feature_word2_plus.m feeds the whole 256² square and sums fc1_1bn over
the positions of its map (`sum(sum(f, 1), 2)`: 2 × 2 for ResNet-50), plus the mirror image's.

Here at a tenth of the size: image_size 32, squash_to 64 (mobilenet_v2's map of a 64² image is
2 × 2 positions of one 32-px window each), on generated tall "pedestrians" (4:1).
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.data.records import Record
from keras_instance.export import served_encoders
from keras_instance.export.encoders import ImageEncoder
from keras_instance.model import backbones
from keras_instance.model.dual_path import build_dual_path
from keras_instance.retrieval import embeddings
from keras_instance.text.tokenizer import Vocabulary
from keras_instance.training import feature_cache, stages

ROOT = Path(__file__).resolve().parents[1]
SIZE, SQUARE = 32, 64
TALL = (200, 50)  # height, width: a tall pedestrian photo
RED, BLUE = (255, 0, 0), (0, 0, 255)


def tiny(**overrides) -> Config:
    return Config.flat(**{**dict(
        backbone="mobilenet_v2", backbone_weights=None, image_size=SIZE, squash_to=SQUARE,
        test_geometry="keep_aspect", test_flip_sum=True, image_head_units=(16,), word_dim=8,
        text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1), embed_dim=16, max_length=8,
        batch_size=4, random_flip=False, crop_scale=(1.0, 1.0), seed=3), **overrides}).validate()


def banded_person(path: Path, seed: int, band: float = 0.32) -> str:
    """A tall image: red top `band`, blue bottom `band`, grey noise between."""
    h, w = TALL
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 160, (h, w, 3), dtype=np.uint8)
    k = int(h * band)
    image[:k], image[h - k:] = RED, BLUE
    Image.fromarray(image).save(path)
    return str(path)


def textured_person(path: Path, seed: int) -> str:
    """A tall image whose top and bottom differ (so geometries embed it differently)."""
    h, w = TALL
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[: h // 3, :, 0] = 250
    image[2 * h // 3:, :, 2] = 10
    Image.fromarray(image).save(path)
    return str(path)


def cuhk_flags() -> dict:
    """configs/cuhk_pedes.flags as {flag: text}."""
    out = {}
    for line in (ROOT / "configs" / "cuhk_pedes.flags").read_text().splitlines():
        if line.startswith("--"):
            key, _, text = line[2:].partition("=")
            out[key] = text
    return out


def test_cuhk_recipe_squashes_to_256_and_tests_the_whole_square():
    flags = cuhk_flags()
    config = Config.flat(image_size=int(flags["image_size"]),
                         squash_to=int(flags["squash_to"]),
                         test_geometry=flags.get("test_geometry", "keep_aspect")).validate()
    assert (config.image.squash_to, config.test.test_geometry) == (256, "keep_aspect")
    assert config.short_side == 256  # the whole square: ResNet-50's 8 × 8 map, 2 × 2 windows
    with pytest.raises(ValueError, match="squash_to must be 0"):
        Config.flat(image_size=224, squash_to=200).validate()
    # the prefix cache (--finetune_from) does not key on the squash: refused, not reused
    with pytest.raises(ValueError, match="prefix cache's key does not hold the squash"):
        stages.check_config(config.replace(finetune_from="conv5_block1_1_conv",
                                           feature_cache="cache"))
    stages.check_config(config.replace(finetune_from="conv5_block1_1_conv"))  # recomputed: fine


# --- training crops -----------------------------------------------------------------------------

def _crops(tmp_path: Path, squash_to: int) -> np.ndarray:
    """The training pipeline's image batches for `squash_to`, as Stage II builds them."""
    tmp_path.mkdir()
    paths = [banded_person(tmp_path / f"p{i}.png", i) for i in range(8)]
    records = [Record(str(i), p, (f"person {i} walking",), i, "train")
               for i, p in enumerate(paths)]
    vocab = Vocabulary.build([c.split() for r in records for c in r.captions])
    config = tiny(squash_to=squash_to, loss_weights=(0.0, 1.0, 1.0), backbone="tiny_cnn",
                  test_geometry="squash")
    data = pipeline.TrainingSet.from_records(records, vocab, config.data.max_length)
    keras.utils.set_random_seed(0)
    dual = build_dual_path(config, data.num_classes, len(vocab), backbone_weights=None)
    ds = stages._dataset(config, 2, data, dual, "image", epochs=3)
    return np.concatenate([inputs["image"].numpy() for inputs, _ in ds])


def _band_rows(crops: np.ndarray, colour) -> np.ndarray:
    """[N] rows of each crop that are mostly `colour`."""
    close = np.abs(crops - np.array(colour, np.float32)).max(axis=-1) < 40  # [N, S, S]
    return (close.mean(axis=2) > 0.9).sum(axis=1)


def test_a_training_crop_comes_from_the_squashed_square(tmp_path):
    """Squashed to 64², the 4:1 person keeps its head and feet in every crop (the red top and
    blue bottom bands, 32 % of the height each, both reach each 32-px crop); cut from the tall
    original, a crop of aspect ≥ 3/4 holds at most 50 × 4/3 of the 200 rows, never both bands
    (64 rows apart)."""
    squashed = _crops(tmp_path / "sq", SQUARE)
    assert len(squashed) == 24
    red, blue = _band_rows(squashed, RED), _band_rows(squashed, BLUE)
    assert (red >= 1).all() and (blue >= 1).all(), (red, blue)
    original = _crops(tmp_path / "orig", 0)  # the old geometry: crops of the tall original
    both = (_band_rows(original, RED) > 0) & (_band_rows(original, BLUE) > 0)
    assert not both.any()


# --- test-time embeddings, evaluation and served ------------------------------------------------

@pytest.fixture(scope="module")
def model():
    config = tiny()
    keras.utils.set_random_seed(5)
    dual = build_dual_path(config, 5, 20, backbone_weights=None)
    # An untrained MobileNetV2's features vanish (~1e-13: unit moving variances), so every image
    # would embed alike. One training-mode pass at momentum 0 sets each BN's moving statistics
    # to a batch's own: features of order 1 that differ between images.
    rng = np.random.default_rng(1)
    app = next(layer for layer in dual.backbone.layers if isinstance(layer, keras.Model))
    norms = [layer for layer in app.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    dual.backbone(rng.uniform(0, 255, (16, SIZE, SIZE, 3)).astype(np.float32), training=True)
    for layer in norms:
        layer.momentum = 0.999
    # random head BN statistics, so the reference below checks its inference-mode BN too
    for layer in dual.image_head.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
    return config, dual


def _head_numpy(head: keras.Model, x: np.ndarray) -> np.ndarray:
    """The image head's embedding (fc → BN → ReLU → fc → BN) of rows x [P, D], in NumPy."""
    def bn(layer, v):
        mean, var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        return layer.gamma.numpy() * (v - mean) / np.sqrt(var + layer.epsilon) + layer.beta.numpy()
    x = np.maximum(bn(head.get_layer("image_fc1_bn"),
                      x @ head.get_layer("image_fc1").kernel.numpy()), 0)
    return bn(head.get_layer("image_embedding"), x @ head.get_layer("image_fc2").kernel.numpy())


def _reference(dual, path: str, resize_method: str) -> np.ndarray:
    """The authors' test feature: the whole SQUARE² image's map (before global pooling), the
    head at each of its positions, summed, plus the mirror image's; L2-normalised."""
    pixels = pipeline.decode_image(tf.io.read_file(path))
    square = pipeline.resize(pixels, [SQUARE, SQUARE], resize_method)[tf.newaxis]
    app = next(layer for layer in dual.backbone.layers if isinstance(layer, keras.Model))
    trunk = keras.Model(app.input, app.get_layer("out_relu").output)
    total = 0.0
    for image in (square, tf.image.flip_left_right(square)):
        grid = trunk(backbones.PixelPreprocess("tf")(image), training=False).numpy()[0]
        assert grid.shape[:2] == (2, 2)  # 64 px at stride 32: 2 × 2 positions of 32-px windows
        total = total + _head_numpy(dual.image_head, grid.reshape(4, -1)).sum(axis=0)
    return total / np.linalg.norm(total)


def test_test_embedding_is_the_head_summed_over_the_square_map(model, tmp_path):
    """evaluate's image embedding is the authors' test feature of the squashed square (the
    reference computes it from the map and the head's weights in NumPy)."""
    config, dual = model
    paths = [textured_person(tmp_path / f"t{i}.png", i) for i in range(2)]
    got = embeddings.config_image_embeddings(config, dual, paths, batch_size=2)
    want = np.stack([_reference(dual, p, config.image.resize_method) for p in paths])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the old geometries embed the tall image otherwise: short side 37 of the original (every
    # window of a 37 × 148 image), or squashed straight to 32² (one position)
    for old in (config.replace(squash_to=0), config.replace(squash_to=0, test_geometry="squash")):
        other = embeddings.config_image_embeddings(old, dual, paths)
        assert np.abs(other - want).max() > 1e-2, np.abs(other - want).max()


def test_the_served_and_keras_encoders_embed_as_evaluate(model, tmp_path):
    """The served image_encoder's graph and image_encoder.keras squash as evaluation does (an
    encoder that skipped the squash would be > 1e-2 off: the test above)."""
    config, dual = model
    paths = [textured_person(tmp_path / f"s{i}.png", 10 + i) for i in range(3)]
    data = [open(p, "rb").read() for p in paths]
    evaluated = embeddings.config_image_embeddings(config, dual, paths)
    module = served_encoders.image_module(config, dual)  # kept: serve holds it by a weak reference
    served = module.serve(tf.constant(data))["embedding"].numpy()
    np.testing.assert_allclose(served, evaluated, atol=1e-5)
    path = tmp_path / "image_encoder.keras"
    ImageEncoder.from_run(config, dual).save(path)
    encoder = keras.models.load_model(path, safe_mode=True)
    from_keras = np.concatenate([encoder(encoder.pixels(d)).numpy() for d in data])
    np.testing.assert_allclose(from_keras, evaluated, atol=1e-5)
    assert encoder.settings["square"] == SQUARE


# --- the Stage I feature cache ------------------------------------------------------------------

def test_a_feature_cache_of_another_geometry_is_not_reused(tmp_path):
    """Stage I's cache (views: the whole image, then training crops) keys on squash_to: a cache
    built from the tall originals is not loaded for the squashed geometry, and vice versa."""
    paths = [banded_person(tmp_path / f"c{i}.png", i) for i in range(4)]
    keras.utils.set_random_seed(0)
    backbone = backbones.build_backbone("tiny_cnn", None, (SIZE, SIZE, 3))
    cache, lines = str(tmp_path / "cache"), []
    args = (cache, backbone, "tiny_cnn", paths, SIZE, 3, False, (1.0, 1.0), 0)
    original = feature_cache.cached_features(*args, log=lines.append)
    squashed = feature_cache.cached_features(*args, log=lines.append, square=SQUARE)
    again = feature_cache.cached_features(*args, log=lines.append, square=SQUARE)
    assert sum("loading" in line for line in lines) == 1, lines  # only the third call loads
    np.testing.assert_array_equal(again, squashed)
    assert np.abs(squashed[:, 1:] - original[:, 1:]).max() > 1e-2  # the crops differ
    # what they are: crops of the squashed square, as training cuts them
    views = next(iter(feature_cache.view_batches(paths, SIZE, 3, False, (1.0, 1.0), 0,
                                                 square=SQUARE)))
    crops = views.numpy()[:, 1:].reshape(-1, SIZE, SIZE, 3)
    assert (_band_rows(crops, RED) >= 1).all() and (_band_rows(crops, BLUE) >= 1).all()
