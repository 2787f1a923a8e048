"""Choosing the tf.distribute strategy: all GPUs by default, N logical CPUs on demand, or
workers."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import tensorflow as tf

from keras_instance.config import STRATEGIES


def use_cpu_replicas(n: int) -> None:
    """Split the CPU into `n` logical devices so MirroredStrategy runs its real path without GPUs.

    Must run before TensorFlow executes any op (the programs call it first thing).
    """
    if n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as err:
        raise RuntimeError("logical CPU devices must be configured before TensorFlow runs any "
                           f"op; call use_cpu_replicas({n}) at program start") from err


def make_strategy(kind: str = "mirrored", num_cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """mirrored: all GPUs or N logical CPUs (a lone CPU: the default strategy); multi_worker."""
    if kind not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {kind!r}")
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if num_cpu_replicas <= 1:
        # One CPU device: nothing to mirror. MirroredStrategy over it still all-reduces every
        # gradient and re-batches the input, which made the Flickr8k Stage II step ~40 % slower
        # (11.4–17.4 s vs 8–10 s per epoch, same run otherwise), so take TF's default strategy.
        return tf.distribute.get_strategy()
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < num_cpu_replicas:
        raise RuntimeError(f"{num_cpu_replicas} CPU replicas asked for but only {len(cpus)} "
                           "logical CPUs exist: call use_cpu_replicas() before any TF op")
    return tf.distribute.MirroredStrategy([d.name for d in cpus[:num_cpu_replicas]])


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True except on the non-chief workers of a multi-worker run."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def worker_scratch(workdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where a non-chief worker keeps its own files: only the chief writes into `workdir`.

    Every worker needs checkpoints to resume and Stage I's weights to start Stage II, and
    computes the same ones (same data, seeds and collective steps); non-chief workers write them
    to a folder of their own, fixed per workdir and task so a rerun finds it, seeded from what
    the chief's workdir already holds.
    """
    task = getattr(strategy.cluster_resolver, "task_id", 0)
    key = hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:12]
    scratch = os.path.join(tempfile.gettempdir(), "keras_instance_workers", key, f"worker{task}")
    from keras_instance import run_folder
    for name in (run_folder.WORD_VECTORS, run_folder.VOCAB, run_folder.META,
                 run_folder.KMEANS_LABELS, run_folder.final_weights_path("", 1)):
        source, target = os.path.join(workdir, name), os.path.join(scratch, name)
        if os.path.exists(source) and not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
    return scratch


def for_this_worker(config, strategy: tf.distribute.Strategy):
    """`config` itself on the chief; on other workers the same config writing to its scratch."""
    if is_chief(strategy):
        return config
    scratch = worker_scratch(config.workdir, strategy)
    cache = os.path.join(scratch, "feature_cache") if config.image.feature_cache else None
    return config.replace(workdir=scratch, feature_cache=cache)
