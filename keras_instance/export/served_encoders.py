"""The served encoders: raw input in (encoded image bytes, UTF-8 sentences), embedding out.

Everything between the raw input and the embedding runs inside the graph, with the code the
evaluation uses: `image_checks.checked_image_bytes`, `pipeline.decode_image`, then the run's test
geometry (keep_aspect: `pipeline.resize_short_side` + `dual_path.window_embedding`, one image at
a time so a request may mix aspect ratios; squash: the whole-image resize of
`pipeline.load_eval_image`; both through `pipeline.eval_pixels`, after the run's squash_to, with
its resize method), the
flip-sum, `tokenizer.token_ids` (the training tokeniser and the vocabulary's StaticHashTable)
and the Position-Shift sum. So served embeddings equal `retrieval.embeddings` on the same inputs.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.export.image_checks import MAX_IMAGE_PIXELS, checked_image_bytes
from keras_instance.export.served_model import (
    IMAGE_MODEL,
    TEXT_MODEL,
    ServedModel,
    l2_normalize,
)
from keras_instance.model.dual_path import DualPath, shift_sum_embedding, window_embedding
from keras_instance.text import tokenizer


class ServedImageEncoder(ServedModel):
    """`serving_default`: images (encoded bytes) [N] → {"embedding": [N, D]}.

    Each image is checked from its header first (`checked_image_bytes`: empty, unknown kind,
    truncated, more than `max_pixels`), then decoded exactly as evaluation decodes it
    (`pipeline.decode_image`: RGB, grayscale/CMYK converted, alpha dropped, a GIF's first frame).
    Any bad image fails the whole request with InvalidArgumentError; the server goes on.

    Geometry as in evaluation: "keep_aspect" embeds each image at its own size (short side
    `short_side`; a request may mix aspect ratios) with `model.window_embedding`; "squash"
    resizes all to image_size² and encodes them as one batch. Both first squash each image to
    `square`² where set (the run's squash_to: CUHK-PEDES as the authors test it). Every resize
    is `resize_method`'s (the run's, `pipeline.resize`).
    """

    model_name, input_name = IMAGE_MODEL, "images"

    def __init__(self, dual: DualPath, flip_sum: bool, max_pixels: int = MAX_IMAGE_PIXELS,
                 feature: str = "embedding", geometry: str = "squash", short_side: int = 256,
                 square: int = 0, resize_method: str = pipeline.RESIZE):
        super().__init__()
        self.encoder = dual.image_encoder()
        self.backbone, self.image_head = dual.backbone, dual.image_head  # tracked: saved
        self.backbone_name = dual.backbone_name
        self.image_size = int(dual.image_size)
        self.flip_sum = bool(flip_sum)
        self.max_pixels = int(max_pixels)
        self.feature = feature  # the branch output served as "embedding" (config.test.test_feature)
        self.geometry = geometry
        self.short_side = int(short_side)
        self.square = int(square)
        self.resize_method = resize_method
        self.embed_dim = int(self.encoder.output[feature].shape[-1])

    def _decode(self, data, index) -> tf.Tensor:
        return pipeline.decode_image(checked_image_bytes(data, index, self.max_pixels))

    def _squashed(self, item) -> tf.Tensor:
        return pipeline.eval_pixels(self._decode(*item), "squash", self.image_size, 0,
                                    self.square, self.resize_method)

    def _windows(self, pixels: tf.Tensor) -> tf.Tensor:
        return window_embedding(self.backbone, self.image_head, self.backbone_name,
                                self.image_size, pixels, self.feature)

    def _embed_whole(self, item) -> tf.Tensor:
        pixels = pipeline.eval_pixels(self._decode(*item), "keep_aspect", self.image_size,
                                      self.short_side, self.square,
                                      self.resize_method)[tf.newaxis]
        embedding = self._windows(pixels)
        if self.flip_sum:
            embedding = embedding + self._windows(tf.image.flip_left_right(pixels))
        return embedding[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        items = (images, tf.range(tf.shape(images)[0]))
        if self.geometry == "keep_aspect":
            embedding = tf.map_fn(self._embed_whole, items,
                                  fn_output_signature=tf.TensorSpec([self.embed_dim], tf.float32))
            return {"embedding": l2_normalize(embedding)}
        size = self.image_size
        pixels = tf.map_fn(self._squashed, items,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        embedding = self.encoder(pixels, training=False)[self.feature]
        if self.flip_sum:
            embedding = embedding + self.encoder(tf.image.flip_left_right(pixels),
                                                 training=False)[self.feature]
        return {"embedding": l2_normalize(embedding)}


class ServedTextEncoder(ServedModel):
    """`serving_default`: sentences [N] → {"embedding": [N, D]}; `token_ids` for inspection."""

    model_name, input_name = TEXT_MODEL, "sentences"

    def __init__(self, text_encoder: keras.Model, vocab: tokenizer.Vocabulary, max_length: int,
                 shift_sum: bool, feature: str = "embedding"):
        super().__init__()
        self.encoder = text_encoder
        self.table = vocab.lookup_table()  # a tracked resource: saved with the SavedModel
        self.max_length = int(max_length)
        self.shift_sum = bool(shift_sum)
        self.feature = feature  # the branch output served as "embedding" (config.test.test_feature)
        self.embed_dim = int(text_encoder.output[feature].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def token_ids(self, sentences):
        """The training pipeline's own front end (`tokenizer.token_ids`): int32 [N, max_length]."""
        return tokenizer.token_ids(sentences, self.table, self.max_length)

    def _embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return self.encoder(tokens, training=False)[self.feature]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        tokens = self.token_ids(sentences)
        embedding = (shift_sum_embedding(self.encoder, tokens, self.feature) if self.shift_sum
                     else self._embed(tokens))
        return {"embedding": l2_normalize(embedding)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve_token_ids(self, sentences):
        return {"token_ids": self.token_ids(sentences)}

    def signatures(self) -> dict:
        return {**super().signatures(), "token_ids": self.serve_token_ids}


def image_module(config: Config, dual: DualPath) -> ServedImageEncoder:
    """The image encoder with a run's test-time settings (feature, geometry, flip-sum)."""
    t = config.test
    return ServedImageEncoder(dual, t.test_flip_sum, feature=t.test_feature,
                              geometry=t.test_geometry, short_side=config.short_side,
                              square=config.image.squash_to,
                              resize_method=config.image.resize_method)


def text_module(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary) -> ServedTextEncoder:
    """The text encoder with a run's test-time settings (feature, shift-sum)."""
    return ServedTextEncoder(dual.text_encoder, vocab, config.data.max_length,
                             config.test.test_shift_sum, feature=config.test.test_feature)
