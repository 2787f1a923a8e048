"""Start-up cost: `fit` traces the training step once.

Without an explicit distribution strategy Keras created the optimizer's slots inside the first
trace of the step, and TensorFlow then traced the whole step a second time; on a tiny model that
was half the time of a training run (and of this test suite).
"""
import conftest
import keras
import numpy as np
import tensorflow as tf

from keras_instance.model.dual_path import build_dual_path
from keras_instance.training.step import InstanceTrainer

CONFIG = conftest.STEP_CONFIG


class CountingTrainer(InstanceTrainer):
    """Counts Python executions of train_step: one per trace."""

    traces = 0

    def train_step(self, data):
        CountingTrainer.traces += 1
        return super().train_step(data)


def test_fit_traces_the_training_step_once():
    dual = build_dual_path(CONFIG, 4, 12, backbone_weights=None)
    trainer = CountingTrainer(dual, loss_weights=(1.0, 1.0, 1.0), margin=0.5,
                              lr_multipliers={"new": 1.0})
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32"),
              "tokens": rng.integers(1, 12, (8, 8)).astype("int32")}
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3], "int32")
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(4, drop_remainder=True)
    history = trainer.fit(ds, epochs=2, verbose=0)
    assert CountingTrainer.traces == 1
    assert int(trainer.optimizer.iterations.numpy()) == 4  # 2 epochs × 2 steps all ran
    assert np.isfinite(history.history["loss"]).all()
