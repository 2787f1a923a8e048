"""The dual-path model: image branch, text branch, and ONE instance classifier shared by both.

Built from functional pieces so each can be used alone: `image_encoder` and `text_encoder` give
the retrieval embeddings (evaluation and export), `training_model` adds the shared classifier.
Stage I with a feature cache trains the same head, text CNN and classifier from stored backbone
outputs; its weights drop straight into the full model for Stage II.
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers

from keras_instance import backbones, text_branch
from keras_instance.config import Config

BRANCH_OUTPUTS = ("embedding", "relu", "feature")


def _head(x, hidden_units, embed_dim, dropout, prefix, sync_bn=False):
    """fc → BN → ReLU (hidden) … fc → BN = embedding → ReLU → dropout = classifier feature."""
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, use_bias=False, name=f"{prefix}_fc{i + 1}")(x)
        x = layers.BatchNormalization(synchronized=sync_bn, name=f"{prefix}_fc{i + 1}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_fc{i + 1}_relu")(x)
    n = len(hidden_units) + 1
    embedding = layers.BatchNormalization(synchronized=sync_bn, name=f"{prefix}_embedding")(
        layers.Dense(embed_dim, use_bias=False, name=f"{prefix}_fc{n}")(x))
    relu = layers.ReLU(name=f"{prefix}_relu")(embedding)
    feature = layers.Dropout(dropout, name=f"{prefix}_dropout")(relu)
    return {"embedding": embedding, "relu": relu, "feature": feature}


def build_image_head(feature_dim: int, hidden_units, embed_dim: int, dropout: float,
                     sync_bn: bool = False) -> keras.Model:
    features = keras.Input(shape=(feature_dim,), name="backbone_features")
    return keras.Model(features, _head(features, hidden_units, embed_dim, dropout, "image",
                                       sync_bn), name="image_head")


def build_text_encoder(vocab_size: int, max_length: int, word_dim: int, widths, blocks,
                       pooling: str, embed_dim: int, dropout: float,
                       sync_bn: bool = False) -> keras.Model:
    tokens = keras.Input(shape=(max_length,), dtype="int32", name="tokens")
    pooled = text_branch.text_cnn(tokens, vocab_size, word_dim, widths, blocks, pooling, sync_bn)
    return keras.Model(tokens, _head(pooled, (), embed_dim, dropout, "text", sync_bn),
                       name="text_encoder")


def shared_classifier(num_classes: int) -> layers.Dense:
    """W without bias; He-normal × 0.1 (METHOD.md): variance 2/fan_in × 0.01."""
    init = keras.initializers.VarianceScaling(scale=0.02, mode="fan_in",
                                              distribution="untruncated_normal")
    return layers.Dense(num_classes, use_bias=False, kernel_initializer=init,
                        dtype="float32", name="shared_classifier")


@dataclasses.dataclass
class DualPath:
    backbone: keras.Model
    image_head: keras.Model
    text_encoder: keras.Model
    classifier: layers.Dense
    image_size: int

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.output.shape[-1])

    def image_encoder(self) -> keras.Model:
        pixels = keras.Input(shape=(self.image_size, self.image_size, 3), name="pixels")
        return keras.Model(pixels, self.image_head(self.backbone(pixels)), name="image_encoder")

    def training_model(self, from_features: bool = False) -> keras.Model:
        """Inputs {"image" | "image_features", "tokens"} → logits and post-ReLU features.

        One `classifier` layer object is called on both branches: one W, two uses.
        """
        tokens = keras.Input(shape=self.text_encoder.input.shape[1:], dtype="int32", name="tokens")
        if from_features:
            image_in = keras.Input(shape=(self.feature_dim,), name="image_features")
            image = self.image_head(image_in)
        else:
            image_in = keras.Input(shape=(self.image_size, self.image_size, 3), name="image")
            image = self.image_head(self.backbone(image_in))
        text = self.text_encoder(tokens)
        outputs = {
            "image_logits": self.classifier(image["feature"]),
            "text_logits": self.classifier(text["feature"]),
            "image_relu": image["relu"],
            "text_relu": text["relu"],
        }
        inputs = {"image_features" if from_features else "image": image_in, "tokens": tokens}
        return keras.Model(inputs, outputs, name="dual_path")

    def full_model(self) -> keras.Model:
        """Everything in one functional model (pixels + tokens): what `.keras` files hold."""
        return self.training_model(from_features=False)


def build_dual_path(config: Config, num_classes: int, vocab_size: int,
                    backbone_weights="config") -> DualPath:
    """All parts of the model for `config`; `backbone_weights` overrides config's (e.g. None)."""
    weights = config.backbone_weights if backbone_weights == "config" else backbone_weights
    backbone = backbones.build_backbone(config.backbone, weights,
                                        (config.image_size, config.image_size, 3),
                                        config.sync_batchnorm)
    feature_dim = int(backbone.output.shape[-1])
    image_head = build_image_head(feature_dim, config.image_head_units, config.embed_dim,
                                  config.dropout, config.sync_batchnorm)
    text_encoder = build_text_encoder(vocab_size, config.max_length, config.word_dim,
                                      config.text_widths, config.text_blocks, config.text_pooling,
                                      config.embed_dim, config.dropout, config.sync_batchnorm)
    return DualPath(backbone, image_head, text_encoder, shared_classifier(num_classes),
                    config.image_size)
