"""--finetune_from: the backbone split into a frozen, cached prefix and a trainable suffix."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.data.demo import generate_demo
from keras_instance.export import layout, served_encoders
from keras_instance.model.backbones import freeze_prefix, split_backbone
from keras_instance.model.dual_path import build_dual_path
from keras_instance.retrieval import embeddings
from keras_instance.training import prefix_cache, stages
from keras_instance.training.step import InstanceTrainer

SIZE = 32
CONFIG = Config.flat(backbone="mobilenet_v2", backbone_weights=None, image_size=SIZE,
                image_head_units=(16,), word_dim=8, text_widths=(8, 16, 16, 32),
                text_blocks=(1, 1, 1, 1), embed_dim=16, max_length=8, dropout=0.0,
                test_geometry="squash")


def _dual(seed=0):
    keras.utils.set_random_seed(seed)
    return build_dual_path(CONFIG, 6, 12, backbone_weights=None)


def test_bad_split_points_say_where_to_split():
    dual = _dual()
    with pytest.raises(ValueError, match="no layer 'nope'.*Conv_1"):
        split_backbone(dual.backbone, "mobilenet_v2", "nope", SIZE)
    with pytest.raises(ValueError, match="inside a residual block.*block_16_expand"):
        split_backbone(dual.backbone, "mobilenet_v2", "block_15_project", SIZE)
    with pytest.raises(ValueError, match="drop one"):
        CONFIG.replace(finetune_from="Conv_1", stage2_freeze_backbone=True).validate()


def test_one_step_from_the_prefix_cache_equals_one_step_through_the_whole_network():
    """Same view, same initial weights: training the suffix from cached maps is the step the
    whole network takes with its prefix frozen (float32 maps: exact up to summation order)."""
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    tokens = rng.integers(1, 12, (8, 8)).astype("int32")
    labels = np.arange(8, dtype="int32") % 6
    after, moved = [], []
    for source in ("image", "image_maps"):
        dual = _dual(seed=3)
        split = dual.split_at("Conv_1")
        freeze_prefix(split)
        start = [w.numpy().copy() for w in dual.backbone.weights]
        trainer = InstanceTrainer(dual, image_input=source, loss_weights=(0.0, 1.0, 1.0),
                                  lr_multipliers={"new": 1.0, "backbone": 1.0, "classifier": 1.0})
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
        image = pixels if source == "image" else split.prefix(pixels, training=False).numpy()
        ds = tf.data.Dataset.from_tensor_slices(({source: image, "tokens": tokens}, labels))
        trainer.fit(ds.batch(8), epochs=1, verbose=0)
        after.append([w.numpy() for w in dual.backbone.weights])
        moved.append([np.abs(a - b).max() for a, b in zip(after[-1], start)])
        suffix_ids = {id(v) for v in split.suffix.weights}
        for v, m in zip(dual.backbone.weights, moved[-1]):
            if id(v) not in suffix_ids:
                assert m == 0, v.path  # the prefix never moves
    assert max(moved[0]) > 1e-3  # the suffix really trained
    for a, b, m in zip(*after, moved[0]):
        np.testing.assert_allclose(a, b, atol=1e-4 * max(m, 1e-3))


def test_cache_keys_and_an_interrupted_build_resumes(tmp_path, monkeypatch):
    data = tmp_path / "data"
    generate_demo(str(data), num_train=40, num_val=2, num_test=2, image_size=40, seed=1)
    paths = sorted(str(p) for p in (data / "images").glob("train_*.png"))
    dual = _dual()
    split = dual.split_at("Conv_1")
    args = (paths, SIZE, 3, True, (0.8, 1.0), 0)
    key = prefix_cache.cache_key(paths, split, SIZE, 3, True, (0.8, 1.0), 0)
    # another split point, other prefix weights, other views: other caches
    assert prefix_cache.cache_key(paths, dual.split_at("block_16_expand"), SIZE, 3, True,
                                  (0.8, 1.0), 0) != key
    assert prefix_cache.cache_key(paths, split_backbone(_dual(seed=1).backbone, "mobilenet_v2",
                                                        "Conv_1", SIZE),
                                  SIZE, 3, True, (0.8, 1.0), 0) != key
    assert prefix_cache.cache_key(paths, split, SIZE, 4, True, (0.8, 1.0), 0) != key
    split = dual.split_at("Conv_1")
    monkeypatch.setattr(prefix_cache, "CHUNK_IMAGES", 8)

    def kill(done):
        if done >= 16:
            raise KeyboardInterrupt("simulated kill")
    with pytest.raises(KeyboardInterrupt):
        prefix_cache.prefix_maps(str(tmp_path / "cache"), "mobilenet_v2", split, *args,
                                 batch_size=12, on_chunk=kill)
    partial = [n for n in os.listdir(tmp_path / "cache") if n.endswith(".partial.json")]
    assert len(partial) == 1
    assert json.load(open(tmp_path / "cache" / partial[0]))["done"] >= 16
    lines = []
    resumed = np.array(prefix_cache.prefix_maps(str(tmp_path / "cache"), "mobilenet_v2", split,
                                                *args, batch_size=12, log=lines.append))
    assert any("resuming at image" in line for line in lines), lines
    whole = np.array(prefix_cache.prefix_maps(str(tmp_path / "again"), "mobilenet_v2", split,
                                              *args, batch_size=12))
    assert resumed.shape == (40, 3, 1, 1, 320) and resumed.dtype == np.float16
    np.testing.assert_array_equal(resumed, whole)
    assert not [n for n in os.listdir(tmp_path / "cache") if "partial" in n]


@pytest.mark.slow
def test_finetuned_stages_export_and_evaluate_alike(tmp_path):
    """Stage II from the prefix cache moves the suffix only; evaluation and the served image
    encoder then use the fine-tuned backbone and agree within 1e-5."""
    data = tmp_path / "data"
    generate_demo(str(data), num_train=16, num_val=2, num_test=4, image_size=SIZE, seed=2)
    config = CONFIG.replace(dataset="demo", data_dir=str(data),
                                 workdir=str(tmp_path / "run"), feature_cache=str(tmp_path / "c"),
                                 finetune_from="Conv_1", batch_size=8, cache_views=1,
                                 negatives="hardest_in_batch", stage1_lr_schedule="0.1:1",
                                 stage2_lr_schedule="0.1:1", dropout=0.1)
    lines = []
    stages.train(config, 1, verbose=0, log=lines.append)
    stages.train(config, 2, verbose=0, log=lines.append)
    assert any("trainable from Conv_1 (prefix cached)" in line for line in lines), lines
    s1 = run_folder.build_model(config, backbone_weights=None)
    s1.full_model().load_weights(run_folder.final_weights_path(config.workdir, 1))
    s2 = run_folder.build_model(config, backbone_weights=None)
    s2.full_model().load_weights(run_folder.final_weights_path(config.workdir, 2))
    suffix = {v.path for v in s2.split_at("Conv_1").suffix.weights}
    changed = {a.path for a, b in zip(s1.backbone.weights, s2.backbone.weights)
               if not np.array_equal(a.numpy(), b.numpy())}
    assert changed and changed <= suffix  # the suffix trained, the prefix stayed as it was
    paths = [str(p) for p in sorted((data / "images").glob("test_*.png"))]
    evaluated = embeddings.config_image_embeddings(config, s2, paths)
    version = layout.save(served_encoders.image_module(config, s2),
                                                  str(tmp_path / "exports"), 1)
    served = tf.saved_model.load(version).signatures["serving_default"](
        images=tf.constant([open(p, "rb").read() for p in paths]))["embedding"].numpy()
    np.testing.assert_allclose(served, evaluated, atol=1e-5)
