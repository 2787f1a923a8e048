"""Stage I from the feature cache vs recomputing the frozen backbone, side by side in one run.

    .venv/bin/python benchmarks/stage1_cache.py                     # Flickr8k, MobileNetV2
    .venv/bin/python benchmarks/stage1_cache.py --train_images 6000 --epochs 10
    .venv/bin/python benchmarks/stage1_cache.py --backbone resnet50 --backbone_weights none

Takes the model and training settings of `configs/flickr8k_stage1.flags` (MobileNetV2 from the
offline ImageNet weights file, frozen; same heads, text CNN, optimiser, batch size), trains Stage I
on the first `--train_images` Flickr8k training images for `--epochs` epochs twice — from cached
backbone features (`--feature_cache`, `--cache_views` views) and from pixels through the frozen
backbone every step — and evaluates both on the 1,000 test images. Prints the steady-state epoch
times (median of epochs after the first, which pays for tracing), their ratio, the one-off cache
build time, and R@1/5/10 both ways. A second cached run with another seed shows how much recall
moves with the seed alone: the noise the two paths are compared against. `--backbone resnet50
--backbone_weights none` times the paper's backbone (random weights: its recall means nothing and
is skipped, its epoch times do). Each path runs at its faster step on CPU by default: XLA for the
cached step, none for the recomputed one (XLA's CPU depthwise convolutions slow MobileNetV2);
`--[no-]cached_xla`, `--[no-]recomputed_xla` change that.

Everything goes to a temporary folder (removed at the end); nothing is written to runs/.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.times.append(time.perf_counter() - inner.start)

        self.times = []
        self.callback = _Timer()

    def steady(self):
        return statistics.median(self.times[1:] if len(self.times) > 1 else self.times)


def subset_manifest(data_dir, train_images, out):
    """A JSONL manifest: the first `train_images` Flickr8k training images + the test split."""
    from keras_instance.data import readers
    records = readers.read_dataset("flickr8k", data_dir)
    train = [r for r in records if r.split == "train"][:train_images]
    test = [r for r in records if r.split == "test"]
    with open(out, "w") as f:
        for r in train + test:
            f.write(json.dumps({"image": os.path.abspath(r.image_path), "captions": r.captions,
                                "split": r.split, "id": r.image_id}) + "\n")
    return len(train), len(test)


def flickr8k_config(flagfile):
    from absl import flags

    from keras_instance.cli import flags as cli_flags
    cli_flags.define_config_flags()
    flags.FLAGS([sys.argv[0], f"--flagfile={flagfile}"])
    return cli_flags.config_from_flags()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data",
                                                           "flickr8k"))
    parser.add_argument("--flagfile", default=os.path.join(ROOT, "configs",
                                                           "flickr8k_stage1.flags"))
    parser.add_argument("--backbone", default=None,
                        help="override the config's backbone (e.g. resnet50 for the paper's)")
    parser.add_argument("--backbone_weights", default=None,
                        help="with --backbone: a weights file, or 'none' (random: timing only)")
    parser.add_argument("--train_images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--cached_xla", action=argparse.BooleanOptionalAction, default=True,
                        help="XLA-compile the cached path's step (faster on CPU)")
    parser.add_argument("--recomputed_xla", action=argparse.BooleanOptionalAction, default=False,
                        help="XLA-compile the recomputed path's step (slower on CPU: XLA's "
                             "CPU depthwise convolutions)")
    parser.add_argument("--recall", action=argparse.BooleanOptionalAction, default=None,
                        help="evaluate test recall (default: yes, unless the backbone is random)")
    args = parser.parse_args()
    if not os.path.isdir(args.data_dir):
        sys.exit(f"Flickr8k not found at {args.data_dir}: pass --data_dir")
    os.chdir(ROOT)  # the flagfile's relative weight path is relative to the repository
    from keras_instance import run_folder as trained
    from keras_instance.data import readers
    from keras_instance.retrieval import results as evaluation
    from keras_instance.training import stages as training

    base = flickr8k_config(args.flagfile)
    tmp = tempfile.mkdtemp(prefix="stage1_cache_")
    try:
        manifest = os.path.join(tmp, "manifest.jsonl")
        n_train, n_test = subset_manifest(args.data_dir, args.train_images, manifest)
        if args.backbone:
            weights = args.backbone_weights
            base = base.replace(backbone=args.backbone, backbone_weights=None if (
                weights or "none").lower() == "none" else weights)
        recall = args.recall if args.recall is not None else base.image.backbone_weights is not None
        base = base.replace(dataset="manifest", data_dir=manifest,
                            stage1_lr_schedule=f"0.1:{args.epochs}",
                            feature_cache=os.path.join(tmp, "cache"))
        on_off = {True: "on", False: "off"}
        print(f"Flickr8k subset: {n_train} training images, {n_test} test images; "
              f"{base.image.backbone} at {base.image.image_size} px, "
              f"batch {base.optim.batch_size}, "
              f"{args.epochs} Stage I epochs; XLA step: cached {on_off[args.cached_xla]}, "
              f"recomputed {on_off[args.recomputed_xla]}")
        runs = {"cached (seed 0)": dict(seed=0, jit_compile=args.cached_xla),
                "recomputed (seed 0)": dict(seed=0, feature_cache=None,
                                            jit_compile=args.recomputed_xla)}
        if recall:  # the seed-to-seed gap is the noise the two paths' recall is judged against
            runs["cached (seed 1)"] = dict(seed=1, jit_compile=args.cached_xla)
        rows = {}
        for name, change in runs.items():
            config = base.replace(workdir=os.path.join(tmp, name.split()[0] + str(change["seed"])),
                                  **change)
            timer = EpochTimer()
            start = time.perf_counter()
            training.train(config, 1, verbose=0, log=lambda *_: None, callbacks=[timer.callback])
            total = time.perf_counter() - start
            result = None
            if recall:
                run = trained.load_trained(config.workdir)
                result = evaluation.evaluate_split(run.config, run.dual, run.vocab,
                                                   readers.load(run.config.data), "test")
            rows[name] = (timer.steady(), total - sum(timer.times), result)
            print(f"  {name}: {timer.steady():.1f} s/epoch (each: "
                  f"{', '.join(f'{t:.1f}' for t in timer.times)})", flush=True)
        cached, recomputed = rows["cached (seed 0)"][0], rows["recomputed (seed 0)"][0]
        print()
        print(f"{'run':22s} {'s/epoch':>8s} {'set-up s':>9s}   i2t R@1/5/10        t2i R@1/5/10")
        for name, (epoch_s, setup_s, r) in rows.items():
            recalls = "(recall not evaluated: random backbone)" if r is None else (
                f"{r['i2t']['r1']:5.1f} {r['i2t']['r5']:5.1f} {r['i2t']['r10']:5.1f}    "
                f"{r['t2i']['r1']:5.1f} {r['t2i']['r5']:5.1f} {r['t2i']['r10']:5.1f}")
            print(f"{name:22s} {epoch_s:8.2f} {setup_s:9.1f}   {recalls}")
        print(f"\nepoch time, recomputed / cached: ×{recomputed / cached:.1f}  (set-up of the "
              "cached runs includes building the cache once; later runs reuse it)")
        if recall:
            rsum = {name: row[2]["rsum"] for name, row in rows.items()}
            print(f"rsum gap cached vs recomputed: "
                  f"{abs(rsum['cached (seed 0)'] - rsum['recomputed (seed 0)']):.1f}; between two "
                  f"cached seeds: {abs(rsum['cached (seed 0)'] - rsum['cached (seed 1)']):.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
