"""TensorFlow's host allocator: plain malloc against BFC, side by side on this CPU.

    python benchmarks/host_allocator.py [--views 192] [--steps 60]

keras_instance/_startup.py sets TF_CPU_ALLOCATOR_USE_BFC=true before TensorFlow loads, because
TensorFlow pools host memory by itself only where its oneDNN kernels are on (by default: CPUs with
VNNI, bfloat16 or AMX instructions). This times, in one child process per allocator (the choice is
read once per process), the two workloads it changes most: the Stage I feature cache's MobileNetV2
inference (224 px, 64 views per call, as `training.feature_cache` runs it) and a Flickr-sized
training step (`train_step.py`'s "sync BN, XLA" row at batch 64). Prints wall time, the process's
user and system CPU time (page faults from fresh mmaps show as system time) and the ratios.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALLOCATORS = (("plain (TensorFlow's default without oneDNN)", "false"), ("BFC", "true"))


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime


def _since(start, count):
    now = _usage()
    return {k: 1000 * (b - a) / count for k, a, b in zip(("wall", "user", "sys"), start, now)}


def child(views: int, steps: int) -> dict:
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from keras_instance import load_library
    load_library()
    import keras
    import numpy as np
    import tensorflow as tf
    import train_step

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, pooling="avg",
                                              input_shape=(224, 224, 3))
    predict = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (64, 224, 224, 3)), tf.float32)
    predict(x).numpy()
    calls = max(views // 64, 1)
    start = _usage()
    for _ in range(calls):
        predict(x).numpy()
    cache = _since(start, calls * 64)
    start = _usage()
    rate, _ = train_step.measure(True, True, 64, steps)
    step = _since(start, 1)  # the whole measure(): build, compile and steps
    return {"cache": cache, "steps_per_s": rate, "step_process": step}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--views", type=int, default=192, help="timed MobileNetV2 views")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.views, args.steps)))
        return
    sys.path.insert(0, HERE)
    from machine import cpu_name
    print(f"CPU: {cpu_name()}; {args.views} MobileNetV2 views (224 px, 64 per call), "
          f"{args.steps} training steps (batch 64, XLA)")
    rows = []
    for name, value in ALLOCATORS:
        env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": value, "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = subprocess.run([sys.executable, __file__, "--child", f"--views={args.views}",
                              f"--steps={args.steps}"], env=env, capture_output=True,
                             text=True, check=True).stdout
        rows.append((name, json.loads(out.strip().splitlines()[-1])))
    base = rows[0][1]
    for name, r in rows:
        c = r["cache"]
        print(f"{name:45s} cache {c['wall']:6.1f} ms/view (user {c['user']:5.1f}, sys "
              f"{c['sys']:5.1f})  ×{base['cache']['wall'] / c['wall']:.2f}   training "
              f"{r['steps_per_s']:5.2f} steps/s ×{r['steps_per_s'] / base['steps_per_s']:.2f}  "
              f"(process sys {r['step_process']['sys'] / 1000:.1f} s)")


if __name__ == "__main__":
    main()
