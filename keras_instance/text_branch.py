"""Text branch: word layer + residual text CNN with left-padded 1×2 convs (METHOD.md, "Text")."""
from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_instance")
class WordEmbedding(layers.Layer):
    """One-hot → `dim` linear map with bias, i.e. an embedding lookup plus a bias.

    Padding (id 0) is an all-zero one-hot vector, so it maps to the bias alone, exactly as the
    authors' one-hot × W + b does; its row of the matrix is never used.
    """

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.dim = dim

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.vocab_size, self.dim), name="embeddings",
                                          initializer=keras.initializers.RandomNormal(stddev=0.1))
        self.bias = self.add_weight(shape=(self.dim,), name="bias", initializer="zeros")

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        mask = ops.cast(ops.expand_dims(ops.not_equal(ids, 0), -1), self.compute_dtype)
        return ops.take(self.embeddings, ids, axis=0) * mask + self.bias

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


def _conv_bn(x, filters, kernel, name, strides=1, relu=True, sync_bn=False):
    padding = "causal" if kernel > 1 else "valid"  # 1×2 sees positions t−1 and t
    x = layers.Conv1D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(synchronized=sync_bn, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if relu else x


def _bottleneck(x, width, bottleneck, stride, name, sync_bn=False):
    y = _conv_bn(x, bottleneck, 1, name + "_a", strides=stride, sync_bn=sync_bn)
    y = _conv_bn(y, bottleneck, 2, name + "_b", sync_bn=sync_bn)
    y = _conv_bn(y, width, 1, name + "_c", relu=False, sync_bn=sync_bn)
    shortcut = x
    if x.shape[-1] != width or stride != 1:
        shortcut = _conv_bn(x, width, 1, name + "_proj", strides=stride, relu=False,
                            sync_bn=sync_bn)
    return layers.ReLU(name=name + "_out")(layers.Add(name=name + "_add")([y, shortcut]))


def text_cnn(tokens, vocab_size: int, word_dim: int, widths=(256, 512, 1024, 2048),
             blocks=(3, 4, 6, 1), pooling: str = "max", sync_bn: bool = False):
    """Token ids [B, L] → pooled text feature [B, widths[-1]].

    Stage s has blocks[s] bottleneck blocks of output width widths[s] (bottleneck width/4); the
    first block of stages 2..4 is "wide" (bottleneck = width) and stages 2 and 3 halve the length.
    `sync_bn` computes batch statistics over all replicas (the global batch), like one device.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"text widths {widths} and blocks {blocks} must have the same length")
    x = WordEmbedding(vocab_size, word_dim, name="word_embedding")(tokens)
    x = layers.BatchNormalization(synchronized=sync_bn, name="word_bn")(x)
    for s, (width, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            first = b == 0 and s > 0
            stride = 2 if first and s in (1, 2) else 1
            bottleneck = width if first else max(width // 4, 1)
            x = _bottleneck(x, width, bottleneck, stride, f"text_s{s + 1}b{b + 1}", sync_bn)
    if pooling == "max":
        return layers.GlobalMaxPooling1D(name="text_pool")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling1D(name="text_pool")(x)
    raise ValueError(f"text pooling must be 'max' or 'avg', got {pooling!r}")

