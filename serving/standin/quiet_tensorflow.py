"""TensorFlow imported without its start-up noise, before the stand-in loads anything.

Importing TensorFlow 2.21 and tensorflow-text prints C++ log lines on every start (twice "All log
messages before absl::InitializeLog() is called", "Could not find cuda drivers") and, on a
machine without a GPU, the E-level "failed call to cuInit" line at the first device query —
none of it actionable, and an E line in a server's log reads as a fault. As the library does
(keras_instance/_startup.py; the serving side imports no library code, so this is its own
copy): TensorFlow is imported and its devices listed with file descriptor 2 pointed at a
temporary file, then every line that is not one of those known start-up messages is written
back, so anything else TensorFlow says (a real error, a GPU that fails to initialise on a
machine that has one) still shows. STANDIN_TF_LOGS=1 leaves TensorFlow's output alone.
"""
from __future__ import annotations

import glob
import os
import sys
import tempfile

NOISE = (
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
NO_GPU_NOISE = ("failed call to cuInit",)


def is_noise(line: str, has_gpu: bool) -> bool:
    return any(n in line for n in NOISE) or (not has_gpu and any(n in line
                                                                 for n in NO_GPU_NOISE))


def import_tensorflow_quietly() -> None:
    """Imports tensorflow and tensorflow_text (when installed) and runs the device query."""
    if os.environ.get("STANDIN_TF_LOGS") or "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: leave it alone
        return
    captured = tempfile.TemporaryFile()
    os.dup2(captured.fileno(), 2)
    try:
        import tensorflow as tf
        try:
            import tensorflow_text  # noqa: F401  (its own absl copy prints the warning again)
        except ImportError:
            pass  # loaded_version.import_tensorflow_text says what this means
        tf.config.list_physical_devices("GPU")  # where cuInit runs; logical devices stay free
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        has_gpu = bool(glob.glob("/dev/nvidia[0-9]*"))
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                if not is_noise(line, has_gpu)]
        captured.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
