"""TensorFlow without its start-up noise: imported first by `keras_instance/__init__.py`.

Importing TensorFlow 2.21 (and tensorflow-text, which carries its own copy of absl logging)
prints ~7 C++ log lines on every command, twice the "before absl::InitializeLog()" warning, and,
on a machine without a GPU, an E-level "failed call to cuInit" line. None of it is actionable:
this module imports TensorFlow with file descriptor 2 pointed at a temporary file, then writes
back every line that is not one of those known start-up messages — anything else TensorFlow
says (a real error, a GPU that fails to initialise on a machine that has one) still shows.
KERAS_INSTANCE_TF_LOGS=1 leaves TensorFlow's output alone.

It also turns on TensorFlow's BFC allocator for host memory (`use_bfc_cpu_allocator`), which
TensorFlow enables by itself only where its oneDNN kernels are on (by default: CPUs with VNNI,
bfloat16 or AMX instructions).
Elsewhere, e.g. on an AVX2-only AMD EPYC, every tensor above glibc's mmap threshold is a fresh
mmap, zero-filled by page faults and unmapped again: building the MobileNetV2 feature cache spent
as much time in the kernel as in the convolutions, and a training step ran 1.3× slower
(docs/benchmarks.md). The allocator changes where buffers live, never what is computed.
A TF_CPU_ALLOCATOR_USE_BFC already in the environment is kept (false: the plain allocator).
"""
from __future__ import annotations

import glob
import os
import sys
import tempfile

_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory", "computation placer already registered",
    "TF-TRT Warning",
)
# Only where no NVIDIA device exists is a failed cuInit the expected answer.
_NO_GPU_NOISE = ("failed call to cuInit",)


def _is_noise(line: str, has_gpu: bool) -> bool:
    return any(n in line for n in _NOISE) or (not has_gpu and any(n in line
                                                                  for n in _NO_GPU_NOISE))


def use_bfc_cpu_allocator() -> None:
    """Pool host allocations (read once, when TensorFlow creates its CPU allocator)."""
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def import_tensorflow_quietly() -> None:
    use_bfc_cpu_allocator()
    if os.environ.get("KERAS_INSTANCE_TF_LOGS") or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): leave it alone
        return
    captured = tempfile.TemporaryFile()
    os.dup2(captured.fileno(), 2)
    try:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (its own absl copy prints the warning again)
        tf.config.list_physical_devices("GPU")  # where cuInit runs; logical devices stay free
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        has_gpu = bool(glob.glob("/dev/nvidia[0-9]*"))
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                if not _is_noise(line, has_gpu)]
        captured.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


import_tensorflow_quietly()
