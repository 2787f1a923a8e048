"""keras-instance: Dual-Path Convolutional Image-Text Embeddings with Instance Loss, in Keras 3.

The library (config, data, text, model, training, retrieval, export, reports, run_folder) never
parses flags; the programs are `python -m keras_instance.cli.<program>`. Importing the package
registers its Keras classes, so its `.keras` files (`image_encoder.keras`, `text_encoder.keras`,
`model.keras`) load with `keras.models.load_model` (safe_mode on) after `import keras_instance`.

A program started as `python -m keras_instance.cli.<program>` parses its flags first and loads
TensorFlow after (`load_library`, from `cli.errors`): a mistyped flag answers at once.
"""
import sys

from keras_instance.config import Config

__all__ = ["Config", "DualPath", "build_dual_path", "load_library"]
__version__ = "0.1.0"


def load_library() -> None:
    """TensorFlow without its start-up noise, then the Keras classes registered."""
    from keras_instance import _startup  # noqa: F401  (first: TensorFlow without start-up noise)
    from keras_instance.export import encoders  # noqa: F401  (ImageEncoder, TextEncoder)
    from keras_instance.model import (  # noqa: F401  (PixelPreprocess, WordEmbedding)
        backbones,
        text_cnn,
    )


def _started_as_program() -> bool:
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("keras_instance.cli.")


def __getattr__(name):
    if name in ("DualPath", "build_dual_path"):
        from keras_instance.model import dual_path
        return getattr(dual_path, name)
    raise AttributeError(f"module 'keras_instance' has no attribute {name!r}")


if not _started_as_program():
    load_library()
