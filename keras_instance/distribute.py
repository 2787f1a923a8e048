"""Choosing the tf.distribute strategy: all GPUs by default, N logical CPUs on demand, or workers."""
from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("mirrored", "multi_worker", "one_device")


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
    """mirrored: every GPU (or the logical CPUs, or the one CPU); multi_worker: reads TF_CONFIG."""
    if kind not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {kind!r}")
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if num_cpu_replicas > 1 and len(cpus) < num_cpu_replicas:
        raise RuntimeError(f"{num_cpu_replicas} CPU replicas asked for but only {len(cpus)} "
                           "logical CPUs exist: call use_cpu_replicas() before any TF op")
    devices = [d.name for d in cpus[:max(num_cpu_replicas, 1)]]
    return tf.distribute.MirroredStrategy(devices)
