"""The served models' common ground: their names, one base class, and the normalisation.

    image_encoder   serving_default: images string[None] (JPEG/PNG/GIF/BMP/WebP ≤ 40 MP)
                                      → embedding float32[None, D], L2-normalised
    text_encoder    serving_default: sentences string[None] → embedding float32[None, D]
                    token_ids: sentences → token_ids int32[None, L]
    text_to_image   serving_default: sentences → ids string[None, k], scores float32[None, k]
                    search, search_by_embedding, embedding_of, index_info (ServedIndex)
    image_to_text   serving_default: images → ids, captions string[None, k], scores [None, k]
                    search, search_by_embedding, embedding_of, index_info (ServedIndex)

The encoders are in `served_encoders`, the indexes in `served_indexes`. Each is a `tf.Module`
(a `ServedModel`) that names its model, its signatures, its input and the warmup batches TF
Serving replays before it serves; `layout.save` writes any of them. Core TensorFlow ops plus
TF Text's NormalizeUTF8 and CaseFoldUTF8, which TF Serving links in. (The `.keras` files'
`encoders.ImageEncoder` / `TextEncoder` are Keras models giving the same embeddings in Python.)
"""
from __future__ import annotations

import tensorflow as tf

from keras_instance.export.layout import SIGNATURE, demo_jpeg

IMAGE_MODEL = "image_encoder"
TEXT_MODEL = "text_encoder"
TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_TEXT = "image_to_text"
WARMUP_SENTENCES = ("a red circle on the left", "Two shapes: a large blue square and a cross.")


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """float32 x / max(‖x‖, 1e-12), row-wise: exactly `retrieval.embeddings.l2_normalize`."""
    x = tf.cast(x, tf.float32)
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), 1e-12)


class ServedModel(tf.Module):
    """A served model: `model_name`, `input_name` ("images" or "sentences"), `signatures()`
    and `warmup_batches()`."""

    model_name = ""
    input_name = ""

    def __init__(self):
        super().__init__(name=self.model_name)

    def signatures(self) -> dict:
        return {SIGNATURE: self.serve}

    def warmup_batches(self) -> list[list[bytes]]:
        if self.input_name == "sentences":
            sentences = [s.encode("utf-8") for s in WARMUP_SENTENCES]
            return [sentences[:1], sentences]
        size = self.image_size
        return [[demo_jpeg(size, 0)], [demo_jpeg(size, 1), demo_jpeg(2 * size, 2)]]
