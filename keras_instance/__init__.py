"""keras-instance: Dual-Path Convolutional Image-Text Embeddings with Instance Loss, in Keras 3.

The library (config, data, text, model, training, retrieval, export, reports, run_folder) never
parses flags; the programs are `python -m keras_instance.cli.<program>`. Importing the package
registers its Keras classes, so its `.keras` files (`image_encoder.keras`, `text_encoder.keras`,
`model.keras`) load with `keras.models.load_model` (safe_mode on) after `import keras_instance`.
"""
from keras_instance import _startup  # noqa: F401  (first: TensorFlow without start-up noise)
from keras_instance.config import Config
from keras_instance.export import encoders as _encoders  # noqa: F401  (ImageEncoder, TextEncoder)
from keras_instance.model import backbones as _backbones  # noqa: F401  (PixelPreprocess)
from keras_instance.model import text_cnn as _text_cnn  # noqa: F401  (WordEmbedding)
from keras_instance.model.dual_path import DualPath, build_dual_path

__all__ = ["Config", "DualPath", "build_dual_path"]
__version__ = "0.1.0"
