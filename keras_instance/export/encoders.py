"""Keras encoders giving exactly the served embeddings: image_encoder.keras, text_encoder.keras.

`python -m keras_instance.cli.export` writes both into the run folder. Load them with

    import keras_instance                       # registers these classes: the one import needed
    image = keras.models.load_model("runs/demo/image_encoder.keras")   # safe_mode=True works
    text = keras.models.load_model("runs/demo/text_encoder.keras")
    text(text.token_ids(["a red circle on the left"]))                   # [1, D], L2-normalised
    image(image.pixels(open("photo.jpg", "rb").read()))             # [1, D], L2-normalised

Inputs and outputs:
- `ImageEncoder`: float32 pixels [B, H, W, 3], RGB in 0..255, every image of a batch the same
  size, as `pixels()` makes them from encoded bytes: the run's test geometry (keep_aspect: the
  whole image with its short side `short_side`; squash: image_size × image_size), of the image
  squashed to `square`² first where the run sets squash_to (CUHK-PEDES), every resize the run's
  `resize_method` (a file saved before it had one: bilinear, as its run). Output: the
  test feature (config.test.test_feature) summed over the windows of the map and with the mirror
  image (flip_sum), L2-normalised — what the served `image_encoder` returns for the same bytes.
- `TextEncoder`: int32 token ids [B, max_length] from `token_ids(sentences)` (the serving
  tokeniser and the run's vocabulary, stored in the file). Output: the test feature summed over
  every Position-Shift offset (shift_sum), L2-normalised — the served `text_encoder`'s.

Both configs are small and carry `load_with`, so a load without `import keras_instance` fails
in one line that names the import.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_instance import run_folder
from keras_instance.config import V3_VALUES, Config
from keras_instance.data import pipeline
from keras_instance.export.served_model import l2_normalize
from keras_instance.model import backbones
from keras_instance.model.dual_path import (
    DualPath,
    build_image_head,
    build_text_encoder,
    shift_sum_embedding,
    window_embedding,
)
from keras_instance.text import tokenizer

LOAD_WITH = "import keras_instance"


@keras.saving.register_keras_serializable(package="keras_instance")
class ImageEncoder(keras.Model):
    """pixels [B, H, W, 3] → the served image embedding [B, D] (module docstring)."""

    def __init__(self, backbone: str, image_size: int, image_head_units, embed_dim: int,
                 feature: str = "embedding", geometry: str = "keep_aspect",
                 short_side: int = 256, flip_sum: bool = True, vgg_fc7: str = "pre_relu",
                 load_with: str = LOAD_WITH, square: int = 0,
                 resize_method: str = pipeline.RESIZE, **kwargs):
        super().__init__(**kwargs)
        self.settings = dict(backbone=backbone, image_size=int(image_size),
                             image_head_units=[int(u) for u in image_head_units],
                             embed_dim=int(embed_dim), feature=feature, geometry=geometry,
                             short_side=int(short_side), flip_sum=bool(flip_sum),
                             vgg_fc7=vgg_fc7, load_with=load_with, square=int(square),
                             resize_method=resize_method)
        self.backbone = backbones.build_backbone(backbone, None, (image_size, image_size, 3),
                                                 vgg_fc7=vgg_fc7)
        self.image_head = build_image_head(int(self.backbone.output.shape[-1]),
                                           image_head_units, embed_dim, 0.0)
        self.built = True

    def _embed(self, pixels):
        s = self.settings
        if s["geometry"] == "keep_aspect":
            return window_embedding(self.backbone, self.image_head, s["backbone"],
                                    s["image_size"], pixels, s["feature"])
        out = self.image_head(self.backbone(pixels, training=False), training=False)
        return tf.cast(out[s["feature"]], tf.float32)

    def call(self, pixels, training=False):
        embedding = self._embed(pixels)
        if self.settings["flip_sum"]:
            embedding = embedding + self._embed(tf.image.flip_left_right(pixels))
        return l2_normalize(embedding)

    def pixels(self, image_bytes: bytes) -> tf.Tensor:
        """Encoded image bytes → [1, H, W, 3] as the served graph prepares them."""
        s = self.settings
        image = pipeline.decode_image(tf.constant(image_bytes))
        return pipeline.eval_pixels(image, s["geometry"], s["image_size"], s["short_side"],
                                    s["square"], s["resize_method"])[tf.newaxis]

    def get_config(self):
        # load_with first: Keras' "Could not locate class" error prints the config, and the
        # one import it needs is then among its first words, not at character 766
        return {"load_with": self.settings["load_with"], **super().get_config(),
                **self.settings}

    @classmethod
    def from_config(cls, config):
        # a file saved before resize_method existed came from a run that resized bilinearly
        return cls(**{"resize_method": V3_VALUES["resize_method"], **config})

    @classmethod
    def from_run(cls, config: Config, dual: DualPath) -> "ImageEncoder":
        image, test = config.image, config.test
        encoder = cls(image.backbone, image.image_size, image.image_head_units,
                      config.model.embed_dim, test.test_feature, test.test_geometry,
                      config.short_side, test.test_flip_sum, image.vgg_fc7,
                      square=image.squash_to, resize_method=image.resize_method)
        encoder.backbone.set_weights(dual.backbone.get_weights())
        encoder.image_head.set_weights(dual.image_head.get_weights())
        return encoder


@keras.saving.register_keras_serializable(package="keras_instance")
class TextEncoder(keras.Model):
    """token ids [B, L] → the served text embedding [B, D]; the vocabulary travels as an asset."""

    def __init__(self, vocab_size: int, max_length: int, word_dim: int, text_widths,
                 text_blocks, text_pooling: str, text_layout: str, embed_dim: int,
                 feature: str = "embedding", shift_sum: bool = True, load_with: str = LOAD_WITH,
                 **kwargs):
        super().__init__(**kwargs)
        self.settings = dict(vocab_size=int(vocab_size), max_length=int(max_length),
                             word_dim=int(word_dim), text_widths=[int(w) for w in text_widths],
                             text_blocks=[int(b) for b in text_blocks],
                             text_pooling=text_pooling, text_layout=text_layout,
                             embed_dim=int(embed_dim), feature=feature,
                             shift_sum=bool(shift_sum), load_with=load_with)
        self.text_encoder = build_text_encoder(vocab_size, max_length, word_dim, text_widths,
                                               text_blocks, text_pooling, embed_dim, 0.0,
                                               layout=text_layout)
        self.vocabulary: tokenizer.Vocabulary | None = None
        self._table = None
        self.built = True

    def call(self, token_ids, training=False):
        s = self.settings
        tokens = tf.cast(token_ids, tf.int32)
        if s["shift_sum"]:
            return l2_normalize(shift_sum_embedding(self.text_encoder, tokens, s["feature"]))
        return l2_normalize(self.text_encoder(tokens, training=False)[s["feature"]])

    def token_ids(self, sentences) -> tf.Tensor:
        """UTF-8 sentences → int32 ids [N, max_length]: the serving graph's own tokeniser."""
        if self.vocabulary is None:
            raise ValueError("this TextEncoder has no vocabulary: load it from a .keras file "
                             "written by keras_instance.cli.export, or set .vocabulary")
        if self._table is None:
            self._table = self.vocabulary.lookup_table()
        return tokenizer.token_ids(tf.constant(list(sentences), tf.string), self._table,
                              self.settings["max_length"])

    def save_assets(self, dir_path):
        self.vocabulary.save(os.path.join(dir_path, "vocab.txt"))

    def load_assets(self, dir_path):
        self.vocabulary = tokenizer.Vocabulary.load(os.path.join(dir_path, "vocab.txt"))
        self._table = None

    def get_config(self):
        # load_with first: Keras' "Could not locate class" error prints the config, and the
        # one import it needs is then among its first words, not at character 766
        return {"load_with": self.settings["load_with"], **super().get_config(),
                **self.settings}

    @classmethod
    def from_run(cls, config: Config, dual: DualPath, vocab: tokenizer.Vocabulary) -> "TextEncoder":
        text = config.text
        encoder = cls(len(vocab), config.data.max_length, text.word_dim, text.text_widths,
                      text.text_blocks, text.text_pooling, text.text_layout,
                      config.model.embed_dim, config.test.test_feature, config.test.test_shift_sum)
        encoder.text_encoder.set_weights(dual.text_encoder.get_weights())
        encoder.vocabulary = vocab
        return encoder


def save_encoders(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary,
                  folder: str) -> list[str]:
    """`folder/image_encoder.keras` and `folder/text_encoder.keras` for this run's settings."""
    written = []
    for name, encoder in ((run_folder.IMAGE_ENCODER, ImageEncoder.from_run(config, dual)),
                          (run_folder.TEXT_ENCODER, TextEncoder.from_run(config, dual, vocab))):
        path = os.path.join(folder, name)
        tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
        encoder.save(tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def save_keras_model(dual: DualPath, workdir: str) -> str:
    """The whole dual-path training model as `workdir/model.keras` (logits and post-ReLU
    features; loads after `import keras_instance`)."""
    path = run_folder.path(workdir, run_folder.TRAINING_MODEL)
    dual.full_model().save(path)
    return path
