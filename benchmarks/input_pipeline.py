"""Input pipeline throughput vs what the training step consumes, side by side in one run.

    .venv/bin/python benchmarks/input_pipeline.py                  # Flickr8k if present, else demo
    .venv/bin/python benchmarks/input_pipeline.py --dataset demo --data_dir data/demo

Measures, each alone on the machine, in examples per second:
1. the Stage II training pipeline (`train_dataset`: read, decode, random resized crop, flip,
   Position Shift, batch) reading one JPEG file per image;
2. the same pipeline streaming from TFRecord shards written here by the code behind
   `python -m keras_instance.cli.prepare` (into a temporary folder);
3. the Stage II training step (backbone trainable) on one batch held in memory, i.e. what the
   model consumes when input is free.
and prints pipeline / step ratios: above 1 the model, not the input, limits training.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

from fit_timing import examples_per_second

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLICKR8K = os.path.join(ROOT, "..", "shared", "data", "flickr8k")
WEIGHTS = os.path.join(ROOT, "..", "shared", "weights",
                       "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")


def pipeline_rate(ds, batches, batch_size):
    it = iter(ds)
    next(it)  # start-up: threads, first file reads
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def step_rate(config, data, batch_size, steps):
    import keras

    from keras_instance.data.pipeline import train_dataset
    from keras_instance.model.dual_path import build_dual_path
    from keras_instance.training.step import InstanceTrainer
    weights = config.image.backbone_weights if config.image.backbone_weights and os.path.exists(
        config.image.backbone_weights) else None
    dual = build_dual_path(config, data.num_classes, int(data.caption_tokens.max()) + 1,
                           backbone_weights=weights)
    trainer = InstanceTrainer(dual, image_input="image", loss_weights=(2.0, 1.0, 0.1),
                              margin=config.loss.margin, lr_multipliers=config.optim.lr_multipliers)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                    jit_compile=config.optim.jit_compile)
    return examples_per_second(
        trainer, train_dataset(data, batch_size, 0, image_size=config.image.image_size), batch_size,
        steps)


def main():
    have_flickr = os.path.isdir(FLICKR8K)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="flickr8k" if have_flickr else "demo")
    parser.add_argument("--data_dir", default=FLICKR8K if have_flickr else
                        os.path.join(ROOT, "data", "demo"))
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--backbone_weights", default=WEIGHTS)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per pipeline")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed")
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--jit_compile", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()

    from keras_instance.config import Config
    from keras_instance.data import readers, shards
    from keras_instance.data.pipeline import TrainingSet, train_dataset
    from keras_instance.data.records import split_records
    from keras_instance.text import tokenizer as text

    records = split_records(readers.read_dataset(args.dataset, args.data_dir), "train")
    vocab = text.Vocabulary.build(text.tokenize_py([c for r in records for c in r.captions]))
    data = TrainingSet.from_records(records, vocab, max_length=32)
    config = Config.flat(backbone=args.backbone, backbone_weights=args.backbone_weights,
                    image_size=args.image_size, image_head_units=(1024,), embed_dim=1024,
                    text_widths=(128, 256, 256, 512), text_blocks=(1, 1, 1, 1), dropout=0.5,
                    margin=0.2, jit_compile=args.jit_compile,
                    lr_multipliers={"new": 1, "classifier": 1, "word": 1, "backbone": 0.01})
    needed = (args.batches + 1) * args.batch_size
    if len(records) < needed:
        sys.exit(f"{len(records)} training images; {needed} needed for --batches={args.batches}")
    print(f"{args.dataset}: {len(records)} training images; {args.backbone} at "
          f"{args.image_size} px, batch {args.batch_size}; {os.cpu_count()} CPUs")

    kwargs = dict(image_size=args.image_size)
    files_rate = pipeline_rate(train_dataset(data, args.batch_size, 0, **kwargs), args.batches,
                               args.batch_size)
    print(f"  pipeline from JPEG files: {files_rate:8.1f} examples/s", flush=True)
    tmp = tempfile.mkdtemp(prefix="input_pipeline_")
    try:
        start = time.perf_counter()
        shards.write_shards(records, tmp, "train", args.num_shards, log=None)
        write_s = time.perf_counter() - start
        shard_rate = pipeline_rate(train_dataset(data, args.batch_size, 0, shards=tmp, **kwargs),
                                   args.batches, args.batch_size)
        print(f"  pipeline from {args.num_shards} shards: {shard_rate:8.1f} examples/s "
              f"(writing them took {write_s:.0f} s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    consume = step_rate(config, data, args.batch_size, args.steps)
    print(f"  Stage II training step:   {consume:8.1f} examples/s "
          f"(XLA {'on' if args.jit_compile else 'off'})")
    print(f"\npipeline / step: files ×{files_rate / consume:.1f}, "
          f"shards ×{shard_rate / consume:.1f}"
          "  (target ≥ 3: input never starves the model)")


if __name__ == "__main__":
    main()
