"""MSCOCO-sized instance classifiers (113,287 classes) train: a ≥100,000-class step on CPU."""
import keras
import numpy as np
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.model.dual_path import build_dual_path
from keras_instance.training.step import InstanceTrainer


def test_training_step_with_100k_classes():
    classes = 100_000
    config = Config.flat(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                    image_size=16,
                    image_head_units=(16,), text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1),
                    embed_dim=32, word_dim=8, max_length=8, dropout=0.0)
    dual = build_dual_path(config, classes, vocab_size=20, backbone_weights=None)
    trainer = InstanceTrainer(dual, image_input="image_features", loss_weights=(0.0, 1.0, 1.0),
                              lr_multipliers={"new": 1.0, "classifier": 1.0})
    assert tuple(dual.classifier.kernel.shape) == (32, classes)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    rng = np.random.default_rng(0)
    labels = np.array([5, 99_999, 50_000, 5], "int32")  # far-apart classes, one repeated
    x = {"image_features": rng.normal(size=(4, dual.feature_dim)).astype("float32"),
         "tokens": rng.integers(1, 20, (4, 8)).astype("int32")}
    before = dual.classifier.kernel.numpy()[:, labels].copy()
    untouched = dual.classifier.kernel.numpy()[:, 12_345].copy()
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, labels)).batch(4), epochs=2,
                          verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    after = dual.classifier.kernel.numpy()
    assert not np.allclose(after[:, labels], before)  # the labelled columns learned
    # An absent class only feels weight decay and the softmax's small push-down.
    assert np.abs(after[:, 12_345] - untouched).max() < np.abs(after[:, labels] - before).max()
