"""A 2-replica MirroredStrategy training step equals a 1-device step on the same global batch.

Runs in a subprocess: logical CPU devices must be configured before TensorFlow runs any op,
which the rest of the test session has long done.
"""
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r"""
    import json, sys
    from keras_instance.training import distribute
    distribute.use_cpu_replicas(2)
    import keras, numpy as np, tensorflow as tf
    from keras_instance.config import Config
    from keras_instance.model.dual_path import build_dual_path
    from keras_instance.training.step import InstanceTrainer

    negatives = sys.argv[1]
    config = Config.flat(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                    image_size=16,
                    image_head_units=(16,), text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1),
                    embed_dim=16, word_dim=8, max_length=8, dropout=0.0, sync_batchnorm=True)
    num_classes, vocab, batch = 6, 12, 8
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2 * batch, 16, 16, 3)).astype("float32")
    tokens = rng.integers(1, vocab, (2 * batch, 8)).astype("int32")
    tokens[:, 6:] = 0
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1] * 2, "int32")  # repeats: same-instance masking
    pool_tokens = rng.integers(1, vocab, (2 * batch, 4, 8)).astype("int32")
    pool_labels = rng.integers(0, num_classes, (2 * batch, 4)).astype("int32")

    def run(strategy, initial):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            dual = build_dual_path(config, num_classes, vocab, backbone_weights=None)
            trainer = InstanceTrainer(dual, from_features=False, loss_weights=(2.0, 1.0, 0.5),
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
        global model_weights
        model_weights = model.weights
        return start, model.get_weights(), history.history["loss"][-1]

    one_start, one, one_loss = run(tf.distribute.OneDeviceStrategy("/cpu:0"), None)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    _, two, two_loss = run(mirrored, one_start)
    moved = max(float(np.abs(a - s).max()) for a, s in zip(one, one_start))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
    names = [w.path for w in model_weights]
    # Differences relative to how far each variable moved in the step (float32 summation order
    # and synchronized BN's E[x²]−E[x]² differ slightly between the two layouts).
    relative = [float(np.abs(a - b).max() / max(np.abs(a - s).max(), 1e-6))
                for a, b, s in zip(one, two, one_start)]
    worst = sorted(zip(relative, names))[-3:]
    print(json.dumps({"moved": moved, "diff": diff, "relative": max(relative),
                      "one_loss": one_loss, "two_loss": two_loss,
                      "worst": worst}))
""")


def _run(negatives):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, negatives], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_replica_step_equals_one_device_step():
    result = _run("hardest_in_batch")
    assert result["moved"] > 1e-3  # the steps really changed the weights
    # float32 noise only: ~5e-4 of a 2.2 move here. Without synchronized BN, or with a loss not
    # divided by the replica count, the difference is as large as the move itself (~2.4); a
    # decay applied once per replica (wd 0.5 at lr 0.05) moves each weight 2.5 % further.
    assert result["diff"] < 1e-3 * result["moved"], json.dumps(result)
    assert abs(result["one_loss"] - result["two_loss"]) < 1e-4, json.dumps(result)


def test_a_lone_cpu_trains_under_the_default_strategy():
    """No GPU and no --num_cpu_replicas: nothing to mirror, so no MirroredStrategy overhead."""
    import pytest
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


DECAY_SCRIPT = textwrap.dedent(r"""
    import json, sys
    from keras_instance.training import distribute
    distribute.use_cpu_replicas(2)
    import keras, numpy as np, tensorflow as tf
    from keras_instance.config import Config
    from keras_instance.model.dual_path import build_dual_path
    from keras_instance.training.step import InstanceTrainer

    config = Config.flat(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                    image_size=16,
                    image_head_units=(16,), text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1),
                    embed_dim=16, word_dim=8, max_length=8, dropout=0.0)
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32"),
              "tokens": rng.integers(1, 12, (8, 8)).astype("int32")}
    labels = np.arange(8, dtype="int32") % 6

    def ratio(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            dual = build_dual_path(config, 6, 12, backbone_weights=None)
            # all loss weights 0: the step is weight decay alone, w1 = w0 · (1 − lr · wd)
            trainer = InstanceTrainer(dual, from_features=False, loss_weights=(0.0, 0.0, 0.0),
                                      lr_multipliers={"new": 1.0, "classifier": 1.0},
                                      weight_decay=0.1)
            trainer.compile(optimizer=keras.optimizers.SGD(1.0))
        kernel = dual.image_head.get_layer("image_fc1").kernel
        before = kernel.numpy().copy()
        ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(8)
        trainer.fit(ds, epochs=1, verbose=0)
        after = kernel.numpy()
        return float(np.median(after / before))

    print(json.dumps({"one": ratio(tf.distribute.OneDeviceStrategy("/cpu:0")),
                      "two": ratio(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))}))
""")


def test_weight_decay_does_not_grow_with_the_replica_count():
    """wd 0.1 at lr 1 scales a kernel by 0.9 per step on any number of replicas (the optimizer
    sums the replicas' gradients, so a per-replica decay term would give 0.8 on two)."""
    proc = subprocess.run([sys.executable, "-c", DECAY_SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(result["one"] - 0.9) < 1e-4, result
    assert abs(result["two"] - 0.9) < 1e-4, result
