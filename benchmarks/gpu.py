"""Accelerator throughput: Stage II images/s (fp32 / mixed / mixed + XLA), Stage I texts/s.

    .venv/bin/python benchmarks/gpu.py                   # ResNet-50, 224 px, batch 128
    .venv/bin/python benchmarks/gpu.py --batch 8 --image_size 64 --steps 3   # CPU smoke run

Stage II: the full dual-path model (ResNet-50 trainable, paper-sized heads and text CNN,
`--classes` instance classes) trained on one in-memory batch, so only the step is timed. Stage I:
the same model from cached backbone features (head + text CNN + shared classifier), texts/s.
Mixed precision is mixed_float16 on GPUs and mixed_bfloat16 on CPUs (`--precision=mixed`).
Prints examples/s and the ratio to the fp32 row. Runs on whatever device TensorFlow sees.
"""
import argparse
import os

from fit_timing import examples_per_second

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rate(stage, mixed, jit, args):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_instance.config import Config
    from keras_instance.model.dual_path import build_dual_path
    from keras_instance.training.precision import DtypePolicy, precision_policy
    from keras_instance.training.step import InstanceTrainer

    config = Config.flat(backbone=args.backbone, backbone_weights=None, image_size=args.image_size,
                    dropout=0.5, margin=0.2, negatives="hardest_in_batch")
    with DtypePolicy(precision_policy(mixed)):
        dual = build_dual_path(config, args.classes, args.vocab, backbone_weights=None)
        image_input = "image_features" if stage == 1 else "image"
        trainer = InstanceTrainer(dual, image_input=image_input,
                                  loss_weights=(0.0, 1.0, 1.0) if stage == 1 else (2.0, 1.0, 0.1),
                                  margin=0.2, lr_multipliers={"new": 1.0, "backbone": 0.01})
        trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                        jit_compile=jit)
    rng = np.random.default_rng(0)
    b = args.batch
    x = {"tokens": rng.integers(1, args.vocab, (b, 32)).astype("int32")}
    if image_input == "image_features":
        x["image_features"] = rng.normal(size=(b, dual.feature_dim)).astype("float32")
    else:
        x["image"] = rng.uniform(0, 255, (b, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, args.classes, b).astype("int32")
    return examples_per_second(trainer, tf.data.Dataset.from_tensors((x, y)), b, args.steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--classes", type=int, default=29783, help="Flickr30k training images")
    parser.add_argument("--vocab", type=int, default=20000)
    args = parser.parse_args()
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
             for g in gpus]
    print(f"devices: {names or ['CPU only']}; {args.backbone} {args.image_size} px, batch "
          f"{args.batch}, {args.classes} classes, {args.steps} timed steps")
    for stage, unit in ((2, "images/s"), (1, "texts/s")):
        base = None
        for label, mixed, jit in (("fp32", False, False), ("mixed", True, False),
                                  ("mixed + XLA", True, True)):
            value = rate(stage, mixed, jit, args)
            base = base or value
            print(f"Stage {'II' if stage == 2 else 'I '} {label:12s} {value:9.1f} {unit}  "
                  f"×{value / base:.2f}", flush=True)


if __name__ == "__main__":
    main()
