"""The dual-path model: image branch, text branch, and ONE instance classifier shared by both.

Built from functional pieces so each can be used alone: `image_encoder` and `text_encoder` give
the retrieval embeddings (evaluation and export), `training_model` adds the shared classifier.
Stage I with a feature cache trains the same head, text CNN and classifier from stored backbone
outputs; its weights drop straight into the full model for Stage II.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from keras import layers

from keras_instance.model import backbones, text_cnn

if TYPE_CHECKING:
    from keras_instance.config import Config

BRANCH_OUTPUTS = ("embedding", "relu", "feature")
# What the image branch of a training model takes: pixels, Stage I's cached pooled features,
# or the prefix cache's maps (--finetune_from: the backbone's suffix runs on them).
IMAGE_INPUTS = ("image", "image_features", "image_maps")


def _head(x, hidden_units, embed_dim, dropout, prefix, sync_bn=False,
          initializer="lecun_uniform"):
    """fc → BN → ReLU (hidden) … fc → BN = embedding → ReLU → dropout = classifier feature."""
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, use_bias=False, kernel_initializer=initializer,
                         name=f"{prefix}_fc{i + 1}")(x)
        x = layers.BatchNormalization(synchronized=sync_bn, name=f"{prefix}_fc{i + 1}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_fc{i + 1}_relu")(x)
    n = len(hidden_units) + 1
    embedding = layers.BatchNormalization(synchronized=sync_bn, name=f"{prefix}_embedding")(
        layers.Dense(embed_dim, use_bias=False, kernel_initializer=initializer,
                     name=f"{prefix}_fc{n}")(x))
    relu = layers.ReLU(name=f"{prefix}_relu")(embedding)
    feature = layers.Dropout(dropout, name=f"{prefix}_dropout")(relu)
    return {"embedding": embedding, "relu": relu, "feature": feature}


def build_image_head(feature_dim: int, hidden_units, embed_dim: int, dropout: float,
                     sync_bn: bool = False, initializer="lecun_uniform") -> keras.Model:
    """Backbone features [B, D] → {"embedding", "relu", "feature"}: [B, embed_dim] each."""
    features = keras.Input(shape=(feature_dim,), name="backbone_features")
    return keras.Model(features, _head(features, hidden_units, embed_dim, dropout, "image",
                                       sync_bn, initializer), name="image_head")


def build_text_encoder(vocab_size: int, max_length: int, word_dim: int, widths, blocks,
                       pooling: str, embed_dim: int, dropout: float, sync_bn: bool = False,
                       layout: str = "authors", initializer="lecun_uniform") -> keras.Model:
    tokens = keras.Input(shape=(max_length,), dtype="int32", name="tokens")
    pooled = text_cnn.text_cnn(tokens, vocab_size, word_dim, widths, blocks, pooling, sync_bn,
                                  layout, initializer)
    return keras.Model(tokens, _head(pooled, (), embed_dim, dropout, "text", sync_bn,
                                     initializer), name="text_encoder")


def shared_classifier(num_classes: int, init: str = "authors", bias: bool = True) -> layers.Dense:
    """ONE W (and bias) for both branches, initialised × 0.1 as in the authors' initParams.

    "authors": their MatConvNet Conv init, U(±sqrt(3/fan_in)) (its constructor resets `init`,
    so the 'msra' branch never runs), × 0.1: variance 0.01/fan_in. "he": He-normal × 0.1,
    variance 0.02/fan_in (this project's first choice).
    """
    if init == "authors":
        kernel = keras.initializers.VarianceScaling(scale=0.01, mode="fan_in",
                                                    distribution="uniform")
    elif init == "he":
        kernel = keras.initializers.VarianceScaling(scale=0.02, mode="fan_in",
                                                    distribution="untruncated_normal")
    else:
        raise ValueError(f"classifier init must be 'authors' or 'he', got {init!r}")
    return layers.Dense(num_classes, use_bias=bias, kernel_initializer=kernel,
                        dtype="float32", name="shared_classifier")


@dataclasses.dataclass
class DualPath:
    backbone: keras.Model
    image_head: keras.Model
    text_encoder: keras.Model
    classifier: layers.Dense
    image_size: int
    backbone_name: str = "resnet50"
    split: backbones.SplitBackbone | None = None  # set by `split_at` (--finetune_from)

    def split_at(self, layer: str) -> backbones.SplitBackbone:
        """Frozen prefix + trainable suffix of the backbone at `layer` (shared variables)."""
        self.split = backbones.split_backbone(self.backbone, self.backbone_name, layer,
                                              self.image_size)
        return self.split

    def image_features(self, image_in, image_input: str = "image", training=None):
        """The pooled backbone feature of `image_in` given as `image_input` (IMAGE_INPUTS)."""
        if image_input == "image_features":
            return image_in
        if image_input == "image_maps":
            return self.split.suffix(image_in, training=training)
        return self.backbone(image_in, training=training)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.output.shape[-1])

    def image_encoder(self) -> keras.Model:
        """pixels [B, S, S, 3] → the head's outputs (the squash test geometry, and training)."""
        pixels = keras.Input(shape=(self.image_size, self.image_size, 3), name="pixels")
        return keras.Model(pixels, self.image_head(self.backbone(pixels)), name="image_encoder")

    def window_embedding(self, pixels: tf.Tensor, feature: str = "embedding") -> tf.Tensor:
        """pixels [B, H, W, 3] → the head's `feature` summed over every S × S window [B, E].

        The keep_aspect test geometry (docs/method.md): the authors feed the whole image (short side
        256) and sum the fc + BN output over all positions of the map.
        """
        return window_embedding(self.backbone, self.image_head, self.backbone_name,
                                self.image_size, pixels, feature)

    def training_model(self, image_input: str = "image") -> keras.Model:
        """Inputs {image_input, "tokens"} → logits and post-ReLU features.

        `image_input` (IMAGE_INPUTS): pixels, the pooled backbone features of a Stage I cache,
        or a split backbone's maps. One `classifier` layer object is called on both branches:
        one W, two uses.
        """
        if image_input not in IMAGE_INPUTS:
            raise ValueError(f"image_input must be one of {IMAGE_INPUTS}, got {image_input!r}")
        tokens = keras.Input(shape=self.text_encoder.input.shape[1:], dtype="int32", name="tokens")
        shapes = {"image": (self.image_size, self.image_size, 3),
                  "image_features": (self.feature_dim,),
                  "image_maps": self.split.map_shape if self.split else None}
        image_in = keras.Input(shape=shapes[image_input], name=image_input)
        image = self.image_head(self.image_features(image_in, image_input))
        text = self.text_encoder(tokens)
        outputs = {
            "image_logits": self.classifier(image["feature"]),
            "text_logits": self.classifier(text["feature"]),
            "image_relu": image["relu"],
            "text_relu": text["relu"],
        }
        return keras.Model({image_input: image_in, "tokens": tokens}, outputs, name="dual_path")

    def full_model(self) -> keras.Model:
        """Everything in one functional model (pixels + tokens): what `.keras` files hold."""
        return self.training_model("image")


def window_embedding(backbone: keras.Model, image_head: keras.Model, backbone_name: str,
                     image_size: int, pixels: tf.Tensor, feature: str = "embedding") -> tf.Tensor:
    """`DualPath.window_embedding` from its parts (the served image encoder tracks the parts)."""
    windows = backbones.window_features(backbone, backbone_name, pixels, image_size)
    count = tf.shape(windows)[1]
    out = image_head(tf.reshape(windows, [-1, windows.shape[-1]]), training=False)
    out = tf.cast(out[feature], tf.float32)
    return tf.reduce_sum(tf.reshape(out, [-1, count, out.shape[-1]]), axis=1)


def shift_sum_embedding(text_encoder: keras.Model, tokens: tf.Tensor,
                        feature: str = "embedding") -> tf.Tensor:
    """Σ of the text branch's `feature` over every Position-Shift offset 0..L−n of each
    sentence of n words (the authors' test-time text feature; `pipeline.all_shifts`).

    All L+1 rolls of every row are encoded as one batch [N·(L+1), L]; offsets beyond L−n are
    masked out of the sum (a sentence of no known words keeps all L+1, as `all_shifts` does).
    """
    length = int(tokens.shape[1])
    offsets = tf.range(length + 1)
    positions = tf.range(length)
    # roll by k: position j holds the word from (j − k) mod L
    source = tf.math.floormod(positions[tf.newaxis, :] - offsets[:, tf.newaxis], length)
    rolled = tf.gather(tokens, source, axis=1)                              # [N, L+1, L]
    emb = text_encoder(tf.reshape(rolled, [-1, length]), training=False)[feature]
    emb = tf.reshape(tf.cast(emb, tf.float32), [-1, length + 1, emb.shape[-1]])
    words = tf.reduce_sum(tf.cast(tokens != 0, tf.int32), axis=1)           # [N] (0 = padding)
    keep = offsets[tf.newaxis, :] <= (length - words)[:, tf.newaxis]       # [N, L+1]
    summed = tf.reduce_sum(tf.cast(emb, tf.float64) * tf.cast(keep, tf.float64)[..., None],
                           axis=1)
    return tf.cast(summed, tf.float32)


def build_dual_path(config: Config, num_classes: int, vocab_size: int,
                    backbone_weights="config") -> DualPath:
    """All parts of the model for `config`; `backbone_weights` overrides config's (e.g. None).

    Each part takes its own section of the config: the backbone `config.image`, the text CNN
    `config.text` (and the data's sentence length), heads and classifier `config.model`.
    """
    image, text, joint = config.image, config.text, config.model
    weights = image.backbone_weights if backbone_weights == "config" else backbone_weights
    backbone = backbones.build_backbone(image.backbone, weights,
                                        (image.image_size, image.image_size, 3),
                                        joint.sync_batchnorm, image.vgg_fc7)
    image_head = build_image_head(int(backbone.output.shape[-1]), image.image_head_units,
                                  joint.embed_dim, joint.dropout, joint.sync_batchnorm,
                                  joint.kernel_initializer)
    text_encoder = build_text_encoder(vocab_size, config.data.max_length, text.word_dim,
                                      text.text_widths, text.text_blocks, text.text_pooling,
                                      joint.embed_dim, joint.dropout, joint.sync_batchnorm,
                                      text.text_layout, joint.kernel_initializer)
    classifier = shared_classifier(num_classes, joint.classifier_init, joint.classifier_bias)
    return DualPath(backbone, image_head, text_encoder, classifier, image.image_size,
                    image.backbone)
