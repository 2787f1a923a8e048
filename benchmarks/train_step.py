"""Training-step throughput on CPU/GPU for the options that change it, measured side by side.

    python benchmarks/train_step.py [--batch 64] [--steps 30]

Builds a Flickr-sized model from cached features (image head + text CNN + 6,000-class shared
classifier) and times `fit` steps for: synchronized BN on/off, XLA (jit_compile) on/off,
mixed_bfloat16 against float32 with and without XLA (what --precision=auto decides from), and
(with XLA) MirroredStrategy over the one CPU against TF's default strategy, which
`distribute.make_strategy` picks when there is no GPU and no --num_cpu_replicas.
`--text_cnn` instead times the text CNN's share (XLA, sync BN): the authors' layout at the
Flickr8k recipe's widths against the v1 layout and narrower or shallower CNNs (existing flags).
`--negatives` times Stage II's ranking negatives (XLA, sync BN): VSE++'s hardest in batch
against the authors' hardest of a caption pool (each step encodes the pool) at several pool
sizes (`--negative_pool`), the first pool row being the Flickr8k recipe's.
Prints the CPU model, steps/s, process CPU time per step (steadier than wall time on a shared
machine) and the ratios to the first row.
"""
import argparse
import time

from keras_instance import load_library

load_library()  # before anything imports TensorFlow: the programs' quiet start-up (_startup.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_instance.config import Config  # noqa: E402
from keras_instance.model.dual_path import build_dual_path  # noqa: E402
from keras_instance.training.precision import DtypePolicy, cpu_has_amx  # noqa: E402
from keras_instance.training.step import InstanceTrainer  # noqa: E402

try:
    from machine import cpu_name
except ImportError:  # run from another folder
    from benchmarks.machine import cpu_name


# --text_cnn rows: (name, text settings); the first is the Flickr8k recipe's text CNN
TEXT_CNNS = [("authors layout, 128..512 (flickr8k)", {}),
             ("v1 layout, 128..512", {"text_layout": "v1"}),
             ("authors layout, 64..256", {"text_widths": (64, 128, 128, 256)}),
             ("authors layout, 3 stages 128,256,512",
              {"text_widths": (128, 256, 512), "text_blocks": (1, 1, 1)})]


# --negatives rows: (name, negatives, margin, pool size); the first pool row is the recipe's
NEGATIVES = [("hardest_in_batch (margin 0.2)", "hardest_in_batch", 0.2, 0),
             ("hardest_of_pool, pool 256 (flickr8k)", "hardest_of_pool", 1.0, 256),
             ("hardest_of_pool, pool 128", "hardest_of_pool", 1.0, 128),
             ("hardest_of_pool, pool 64", "hardest_of_pool", 1.0, 64)]


def measure(sync_bn, jit, batch, steps, classes=6000, vocab=5000, strategy=None,
            policy="float32", text=None, negatives=("hardest_in_batch", 0.2, 0)):
    """(steps/s, process CPU ms per step) of `steps` timed steps after a traced warm-up.

    `negatives` = (mode, margin, pool size): with a pool, each example carries pool/batch
    random captions, as `data.pipeline.train_dataset` spreads them."""
    mode, margin, pool = negatives
    with (strategy or tf.distribute.get_strategy()).scope(), DtypePolicy(policy):
        trainer, feature_dim = _trainer(sync_bn, jit, classes, vocab, text, mode, margin)
    rng = np.random.default_rng(0)
    n = batch * steps
    x = {"image_features": rng.normal(size=(n, feature_dim)).astype("float32"),
         "tokens": rng.integers(1, vocab, (n, 32)).astype("int32")}
    y = rng.integers(0, classes, n).astype("int32")
    if pool:
        per_example = -(-pool // batch)
        x["pool_tokens"] = rng.integers(1, vocab, (n, per_example, 32)).astype("int32")
        x["pool_labels"] = rng.integers(0, classes, (n, per_example)).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    # trace / compile on an uncached copy: a partly read cache() makes TF print a warning
    trainer.fit(ds.take(3), epochs=1, verbose=0, shuffle=False)
    ds = ds.cache()
    start, cpu = time.perf_counter(), time.process_time()
    trainer.fit(ds, epochs=1, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / steps


def _trainer(sync_bn, jit, classes, vocab, text=None, negatives="hardest_in_batch",
             margin=0.2):
    settings = dict(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                    image_size=32, embed_dim=1024, image_head_units=(1024,),
                    text_widths=(128, 256, 256, 512), text_blocks=(1, 1, 1, 1), word_dim=300,
                    dropout=0.5, sync_batchnorm=sync_bn)
    config = Config.flat(**{**settings, **(text or {})})
    dual = build_dual_path(config, classes, vocab, backbone_weights=None)
    dual.backbone.trainable = False
    feature_dim = dual.feature_dim  # tiny_cnn stands in: only its output size matters here
    trainer = InstanceTrainer(dual, image_input="image_features", loss_weights=(2.0, 1.0, 0.1),
                              margin=margin, negatives=negatives, lr_multipliers={"new": 1.0})
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                    jit_compile=jit)
    return trainer, feature_dim


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--text_cnn", action="store_true",
                        help="time text CNN variants (XLA, sync BN) instead of the step options")
    parser.add_argument("--negatives", action="store_true",
                        help="time Stage II's ranking negatives (XLA, sync BN): in batch, and "
                             "hardest of pools of 256, 128, 64 captions")
    args = parser.parse_args()
    gpu = bool(tf.config.list_logical_devices("GPU"))
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    rows = [("sync BN, no XLA", True, False, None, "float32"),
            ("plain BN, no XLA", False, False, None, "float32"),
            ("sync BN, XLA", True, True, None, "float32"),
            ("plain BN, XLA", False, True, None, "float32"),
            (f"sync BN, no XLA, {mixed}", True, False, None, mixed),
            (f"sync BN, XLA, {mixed}", True, True, None, mixed)]
    if not gpu:  # with a GPU, mirrored spans it instead
        rows.append(("sync BN, XLA, MirroredStrategy on 1 CPU", True, True,
                     tf.distribute.MirroredStrategy(["/cpu:0"]), "float32"))
    rows = [(name, *row, None, NEGATIVES[0][1:]) for name, *row in rows]
    if args.text_cnn:
        rows = [(name, True, True, None, "float32", text, NEGATIVES[0][1:])
                for name, text in TEXT_CNNS]
    if args.negatives:
        rows = [(name, True, True, None, "float32", None, row) for name, *row in NEGATIVES]
    base = None
    print(f"batch {args.batch}, {args.steps} timed steps, devices: "
          f"{[d.name for d in tf.config.list_logical_devices()]}, CPU: {cpu_name()} "
          f"(AMX: {'yes' if cpu_has_amx() else 'no'})")
    for name, sync_bn, jit, strategy, policy, text, negatives in rows:
        rate, cpu_ms = measure(sync_bn, jit, args.batch, args.steps, strategy=strategy,
                               policy=policy, text=text, negatives=negatives)
        base = base or (rate, cpu_ms)
        print(f"{name:40s} {rate:7.2f} steps/s  {args.batch * rate:8.1f} examples/s  "
              f"×{rate / base[0]:.2f}   {cpu_ms:6.0f} CPU ms/step  ×{cpu_ms / base[1]:.2f}")


if __name__ == "__main__":
    main()
