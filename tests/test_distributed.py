"""N replicas train like one device: a 2-replica MirroredStrategy step equals a 1-device step on
the same global batch (VSE++'s in-batch negatives, and the authors' half-batch RankLoss with its
pool mined and its negative image redrawn across replicas), and weight decay does not grow with
the replica count.

One subprocess measures all of it: logical CPU devices must be configured before TensorFlow runs
any op, which the rest of the test session has long done.
"""
import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(r"""
    import json
    from keras_instance.training import distribute
    distribute.use_cpu_replicas(2)
    import keras, numpy as np, tensorflow as tf
    from keras_instance.config import Config
    from keras_instance.model.dual_path import build_dual_path
    from keras_instance.training.step import InstanceTrainer

    config = Config.flat(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                         image_size=16, image_head_units=(16,), text_widths=(8, 16, 16, 32),
                         text_blocks=(1, 1, 1, 1), embed_dim=16, word_dim=8, max_length=8,
                         dropout=0.0, sync_batchnorm=True)
    num_classes, vocab, batch = 6, 12, 8
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2 * batch, 16, 16, 3)).astype("float32")
    tokens = rng.integers(1, vocab, (2 * batch, 8)).astype("int32")
    tokens[:, 6:] = 0
    # repeats: same-instance masking; rows 2 and 3 (anchor and its negative) share class 2, so
    # the half-batch loss redraws the negative image from row 4, on the other replica
    labels = np.array([0, 1, 2, 2, 4, 5, 0, 1] * 2, "int32")
    pool_tokens = rng.integers(1, vocab, (2 * batch, 4, 8)).astype("int32")
    pool_labels = rng.integers(0, num_classes, (2 * batch, 4)).astype("int32")
    ONE = tf.distribute.OneDeviceStrategy("/cpu:0")
    TWO = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert TWO.num_replicas_in_sync == 2

    def run(strategy, negatives, initial):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            dual = build_dual_path(config, num_classes, vocab, backbone_weights=None)
            trainer = InstanceTrainer(dual, image_input="image", loss_weights=(2.0, 1.0, 0.5),
                                      margin=0.5, negatives=negatives,
                                      lr_multipliers={"new": 1.0, "backbone": 0.5},
                                      weight_decay=0.5)
            trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
            model = dual.full_model()
            if initial is not None:
                model.set_weights(initial)
        inputs = {"image": images, "tokens": tokens}
        if negatives == "hardest_of_pool":
            inputs.update(pool_tokens=pool_tokens, pool_labels=pool_labels)
        ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch)
        start = [w.copy() for w in model.get_weights()]
        history = trainer.fit(ds, epochs=1, verbose=0)
        return start, model.get_weights(), history.history["loss"][-1], model.weights

    def compare(negatives):
        one_start, one, one_loss, weights = run(ONE, negatives, None)
        _, two, two_loss, _ = run(TWO, negatives, one_start)
        moved = max(float(np.abs(a - s).max()) for a, s in zip(one, one_start))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
        # relative to how far each variable moved (float32 summation order and synchronized
        # BN's E[x²]−E[x]² differ slightly between the two layouts)
        relative = [float(np.abs(a - b).max() / max(np.abs(a - s).max(), 1e-6))
                    for a, b, s in zip(one, two, one_start)]
        worst = sorted(zip(relative, [w.path for w in weights]))[-3:]
        return {"moved": moved, "diff": diff, "one_loss": one_loss, "two_loss": two_loss,
                "worst": worst}

    def decay_ratio(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            dual = build_dual_path(config, num_classes, vocab, backbone_weights=None)
            # all loss weights 0: the step is weight decay alone, w1 = w0 · (1 − lr · wd)
            trainer = InstanceTrainer(dual, image_input="image", loss_weights=(0.0, 0.0, 0.0),
                                      lr_multipliers={"new": 1.0, "classifier": 1.0},
                                      weight_decay=0.1)
            trainer.compile(optimizer=keras.optimizers.SGD(1.0))
        kernel = dual.image_head.get_layer("image_fc1").kernel
        before = kernel.numpy().copy()
        ds = tf.data.Dataset.from_tensor_slices(
            ({"image": images[:batch], "tokens": tokens[:batch]}, labels[:batch])).batch(batch)
        trainer.fit(ds, epochs=1, verbose=0)
        return float(np.median(kernel.numpy() / before))

    print(json.dumps({"hardest_in_batch": compare("hardest_in_batch"),
                      "hardest_of_pool": compare("hardest_of_pool"),
                      "decay": {"one": decay_ratio(ONE), "two": decay_ratio(TWO)}}))
""")


@pytest.fixture(scope="module")
def measured():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["hardest_in_batch", "hardest_of_pool"])
def test_two_replica_step_equals_one_device_step(measured, negatives):
    result = measured[negatives]
    assert result["moved"] > 1e-3  # the steps really changed the weights
    # float32 noise only: ~5e-4 of a 2.2 move here. Without synchronized BN, or with a loss not
    # divided by the replica count, the difference is as large as the move itself (~2.4); a
    # decay applied once per replica (wd 0.5 at lr 0.05) moves each weight 2.5 % further; a
    # pool mined per replica, anchors paired across replicas, or a negative image redrawn from
    # one replica's rows only, mines other negatives.
    assert result["diff"] < 1e-3 * result["moved"], json.dumps(result)
    assert abs(result["one_loss"] - result["two_loss"]) < 1e-4, json.dumps(result)


@pytest.mark.slow
def test_weight_decay_does_not_grow_with_the_replica_count(measured):
    """wd 0.1 at lr 1 scales a kernel by 0.9 per step on any number of replicas (the optimizer
    sums the replicas' gradients, so a per-replica decay term would give 0.8 on two)."""
    assert abs(measured["decay"]["one"] - 0.9) < 1e-4, measured["decay"]
    assert abs(measured["decay"]["two"] - 0.9) < 1e-4, measured["decay"]


def test_a_lone_cpu_trains_under_the_default_strategy():
    """No GPU and no --num_cpu_replicas: nothing to mirror, so no MirroredStrategy overhead."""
    import tensorflow as tf

    from keras_instance.training import distribute
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible: the mirrored strategy spans it")
    strategy = distribute.make_strategy("mirrored", num_cpu_replicas=0)
    assert strategy is tf.distribute.get_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)
    assert distribute.is_chief(strategy)
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.make_strategy("parameter_server")
