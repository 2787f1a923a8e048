"""Compute precision: --precision=float32|mixed|auto as a Keras dtype policy.

mixed computes in float16 on GPUs (with loss scaling) and bfloat16 on CPUs; logits, losses and
variables stay float32. auto picks mixed only where the hardware runs it natively: on a CPU
without AMX bfloat16 matmuls are emulated, and the training step is ~3x slower (README).
"""
from __future__ import annotations

import keras
import tensorflow as tf


def precision_policy(precision: str | bool) -> str:
    """The Keras dtype policy for --precision (True/False: the older --mixed_precision).

    mixed: float16 on GPUs, bfloat16 on CPUs. auto: mixed where the hardware runs it natively
    (GPUs of compute capability 7.0 or more, CPUs with AMX: `cpu_has_amx`), float32 elsewhere —
    on CPUs without AMX bfloat16 matmuls are emulated and slower (README, training performance).
    """
    precision = {True: "mixed", False: "float32"}.get(precision, precision)
    gpus = tf.config.list_physical_devices("GPU")
    if precision == "auto":
        capable = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                   >= (7, 0) for g in gpus]
        precision = "mixed" if (gpus and all(capable)) or (not gpus and cpu_has_amx()) else \
            "float32"
    if precision == "float32":
        return "float32"
    return "mixed_float16" if gpus else "mixed_bfloat16"


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Intel AMX with bfloat16 tiles (Sapphire Rapids and later): the 'amx_bf16' CPU flag."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


class DtypePolicy:
    """Builds inside use `policy`; the previous global policy comes back afterwards."""

    def __init__(self, policy: str):
        self.policy = policy

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)
