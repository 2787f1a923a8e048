"""Text branch: word layer + residual text CNN with left-padded 1×2 convs (docs/method.md, "Text
branch")."""
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


LAYOUTS = ("authors", "v1")


def _conv_bn(x, filters, kernel, name, strides=1, relu=True, sync_bn=False,
             initializer="lecun_uniform"):
    # 1×2: "causal" pads one position on the LEFT, so output t sees t−1 and t; with stride 2,
    # output j sees 2j−1 and 2j (MatConvNet's pad [0 0 1 0], stride 2)
    padding = "causal" if kernel > 1 else "valid"
    x = layers.Conv1D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=initializer, name=name)(x)
    x = layers.BatchNormalization(synchronized=sync_bn, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if relu else x


def _bottleneck(x, width, bottleneck, stride, name, layout, sync_bn=False,
                initializer="lecun_uniform"):
    """1×1 → 1×2 → 1×1 (+ projection shortcut when the width or length changes).

    layout "authors": a length-halving block strides its 1×2 conv (positions 2j−1, 2j reach
    output j); "v1" strided its first 1×1 conv instead (odd positions never reached the main
    path), kept so runs trained with it still load.
    """
    conv = dict(sync_bn=sync_bn, initializer=initializer)
    first_stride, middle_stride = (1, stride) if layout == "authors" else (stride, 1)
    y = _conv_bn(x, bottleneck, 1, name + "_a", strides=first_stride, **conv)
    y = _conv_bn(y, bottleneck, 2, name + "_b", strides=middle_stride, **conv)
    y = _conv_bn(y, width, 1, name + "_c", relu=False, **conv)
    shortcut = x
    if x.shape[-1] != width or stride != 1:
        shortcut = _conv_bn(x, width, 1, name + "_proj", strides=stride, relu=False, **conv)
    return layers.ReLU(name=name + "_out")(layers.Add(name=name + "_add")([y, shortcut]))


def bottleneck_width(stage: int, block: int, width: int, layout: str = "authors") -> int:
    """Inner width of block `block` of stage `stage` (both 0-based).

    The first block of stages 2..4 is "wide" (inner = width). Other blocks use width/4, except
    the very first block of the network, which the authors' net gives width/2 (300 → 128 → 256
    in their fc2_1_*; "v1" used width/4 there too).
    """
    if block == 0 and stage > 0:
        return width
    if block == 0 and stage == 0 and layout == "authors":
        return max(width // 2, 1)
    return max(width // 4, 1)


def text_cnn(tokens, vocab_size: int, word_dim: int, widths=(256, 512, 1024, 2048),
             blocks=(3, 4, 6, 1), pooling: str = "max", sync_bn: bool = False,
             layout: str = "authors", initializer="lecun_uniform"):
    """Token ids [B, L] → pooled text feature [B, widths[-1]].

    Stage s has blocks[s] bottleneck blocks of output width widths[s] (`bottleneck_width`);
    stages 2 and 3 halve the length (32 → 16 → 8). `sync_bn` computes batch statistics over all
    replicas (the global batch), like one device.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"text widths {widths} and blocks {blocks} must have the same length")
    x = WordEmbedding(vocab_size, word_dim, name="word_embedding")(tokens)
    x = layers.BatchNormalization(synchronized=sync_bn, name="word_bn")(x)
    x = residual_stages(x, widths, blocks, sync_bn, layout, initializer)[-1]
    if pooling == "max":
        return layers.GlobalMaxPooling1D(name="text_pool")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling1D(name="text_pool")(x)
    raise ValueError(f"text pooling must be 'max' or 'avg', got {pooling!r}")


def residual_stages(x, widths, blocks, sync_bn: bool = False, layout: str = "authors",
                    initializer="lecun_uniform") -> list:
    """Word features [B, L, D] → the output of every stage (lengths L, L/2, L/4, L/4)."""
    if layout not in LAYOUTS:
        raise ValueError(f"text layout must be one of {LAYOUTS}, got {layout!r}")
    outputs = []
    for s, (width, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if b == 0 and s in (1, 2) else 1
            x = _bottleneck(x, width, bottleneck_width(s, b, width, layout), stride,
                            f"text_s{s + 1}b{b + 1}", layout, sync_bn, initializer)
        outputs.append(x)
    return outputs

