"""Stage II epoch time on Flickr8k, four ways, measured side by side in one run (issue 13):

    (a) backbone frozen, pooled features from the Stage I cache
    (b) --finetune_from=LAYER: the suffix trains from the prefix cache's maps
    (c) the paper's Stage II: the whole backbone trains, recomputed every step
    (d) the same suffix trains, the frozen prefix recomputed every step

    .venv/bin/python benchmarks/finetune.py [--layer Conv_1] [--steps 8] [--batch 32]

Every row is the real Stage II step (`InstanceTrainer`, Flickr8k's recipe: MobileNetV2 at 224 px,
1024-wide heads, the narrowed text CNN, 6,000 classes, ranking loss) on batches of real Flickr8k
images and captions held in memory (the input pipeline is measured by input_pipeline.py), each
at its faster CPU step (with and without XLA, both timed); epoch time = 187 steps (6,000 images
at batch 32) × the step time. Needs ../shared/data/flickr8k and the MobileNetV2 weights file.
"""
import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.data import pipeline, readers
from keras_instance.data.records import split_records
from keras_instance.model.backbones import freeze_prefix
from keras_instance.model.dual_path import build_dual_path
from keras_instance.text import tokenizer as text
from keras_instance.training.step import InstanceTrainer

try:
    from machine import cpu_name
except ImportError:  # run from another folder
    from benchmarks.machine import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "flickr8k")
WEIGHTS = os.path.join(ROOT, "..", "shared", "weights",
                       "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")


def real_batch(batch: int, config: Config):
    records = split_records(readers.read_dataset("flickr8k", DATA), "train")[:batch]
    vocab = text.Vocabulary.build(text.tokenize_py([c for r in records for c in r.captions]))
    images = np.stack([pipeline.load_eval_image(tf.constant(r.image_path),
                                                config.image.image_size).numpy() for r in records])
    tokens = text.encode_captions([r.captions[0] for r in records], vocab, config.data.max_length)
    return images.astype("float32"), tokens, np.arange(batch, dtype="int32"), len(vocab)


def step_seconds(row: str, layer: str, jit: bool, batch: int, steps: int, config: Config,
                 images, tokens, labels, vocab_size: int) -> float:
    keras.utils.set_random_seed(0)
    dual = build_dual_path(config, 6000, vocab_size)
    dual.backbone.trainable = row != "a"
    source = {"a": "image_features", "b": "image_maps", "c": "image", "d": "image"}[row]
    if row in ("b", "d"):
        freeze_prefix(dual.split_at(layer))
    inputs = {"tokens": tokens}
    if row == "a":
        inputs[source] = dual.backbone(images, training=False).numpy()
    elif row == "b":
        inputs[source] = dual.split.prefix(images, training=False).numpy().astype("float16") \
            .astype("float32")  # as the cache stores them
    else:
        inputs[source] = images
    trainer = InstanceTrainer(dual, image_input=source, loss_weights=(2.0, 1.0, 0.1), margin=0.2,
                              negatives="hardest_in_batch",
                              lr_multipliers={**config.optim.lr_multipliers, "backbone": 0.1})
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                    jit_compile=jit)
    one = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch).take(1).cache()
    trainer.fit(one.repeat(2), epochs=1, verbose=0)  # trace / compile
    start = time.perf_counter()
    trainer.fit(one.repeat(steps), epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", default="Conv_1")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", default="abcd")
    args = parser.parse_args()
    config = Config.flat(dataset="flickr8k", backbone="mobilenet_v2", backbone_weights=WEIGHTS,
                    image_size=224, image_head_units=(1024,), embed_dim=1024, word_dim=300,
                    text_widths=(128, 256, 256, 512), text_blocks=(1, 1, 1, 1), dropout=0.5,
                    lr_multipliers={"new": 1.0, "classifier": 1.0, "word": 1.0, "bn_gamma": 1.0,
                                    "bn_beta": 1.0, "backbone": 0.1})
    images, tokens, labels, vocab_size = real_batch(args.batch, config)
    steps_per_epoch = 6000 // args.batch
    print(f"Stage II step on Flickr8k batches (MobileNetV2 224 px, split at {args.layer}), "
          f"batch {args.batch}, {args.steps} timed steps per setting; {cpu_name()}, "
          f"TF {tf.__version__}")
    names = {"a": "(a) frozen backbone, Stage I feature cache",
             "b": f"(b) suffix from {args.layer} trains, prefix cache",
             "c": "(c) whole backbone trains, recomputed",
             "d": f"(d) suffix from {args.layer} trains, prefix recomputed"}
    results = {}
    for row in args.rows:
        timed = {jit: step_seconds(row, args.layer, jit, args.batch, args.steps, config, images,
                                   tokens, labels, vocab_size) for jit in (False, True)}
        jit = min(timed, key=timed.get)
        results[row] = timed[jit]
        print(f"{names[row]:48s} {timed[False] * 1000:8.0f} ms/step  XLA {timed[True] * 1000:8.0f}"
              f" ms/step  → {steps_per_epoch * timed[jit]:7.1f} s/epoch "
              f"({args.batch / timed[jit]:6.1f} images/s, {'XLA' if jit else 'no XLA'})")
    if "b" in results and "c" in results:
        print(f"(b) vs (c): ×{results['c'] / results['b']:.1f} faster")
    if "b" in results and "d" in results:
        print(f"(b) vs (d): ×{results['d'] / results['b']:.1f} faster")
    if "a" in results and "b" in results:
        print(f"(b) vs (a): ×{results['b'] / results['a']:.2f} the frozen step's time")


if __name__ == "__main__":
    main()
