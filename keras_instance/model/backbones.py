"""Image backbones: keras.applications CNNs (and a tiny CNN for demos/tests) as pooled features.

Every backbone takes float RGB pixels in [0, 255] and does its own preprocessing inside the graph,
so exported models accept plain decoded images. `weights` follows keras.applications:
"imagenet" (downloads; needs internet), a path to a weights file (offline), or None (random).

Two views of one backbone (same variables):
- `build_backbone`: pixels [B, S, S, 3] → pooled feature [B, D], what training sees;
- `window_features`: pixels of any size [B, H, W, 3] → the pooled feature of every S × S window
  [B, P, D] (stride 32 px), as the authors test: their MatConvNet nets are fully convolutional,
  ResNet's pool5 averages 7 × 7 cells and VGG's fc6 is a 7 × 7 convolution, so a 256 × 384 photo
  gives 2 × 6 positions. keras' ResNet / MobileNetV2 are built on (None, None, 3) inputs for it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import keras
import tensorflow as tf
from keras import layers

from keras_instance.model.backbone_names import BACKBONE_NAMES


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what its feature is."""
    name: str
    builder: Callable       # (preprocessed pixels, weights, input_shape, …) → pooled feature
    preprocessing: str      # PixelPreprocess mode
    kind: str               # "pooled" (global average pool), "fc" (VGG's fc7), "flatten"
    split_examples: tuple   # first layers of the last blocks: good --finetune_from values

    @property
    def has_windows(self) -> bool:
        """Whether the keep_aspect test geometry (features of every window) applies."""
        return self.kind != "flatten"


BACKBONE_SPECS: dict[str, BackboneSpec] = {}


def register_backbone(name: str, preprocessing: str, kind: str, split_examples=()):
    """Decorator: add a builder to the registry under `name` (the --backbone choices)."""
    def register(builder):
        BACKBONE_SPECS[name] = BackboneSpec(name, builder, preprocessing, kind,
                                            tuple(split_examples))
        return builder
    return register


def spec(name: str) -> BackboneSpec:
    if name not in BACKBONE_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_SPECS)}")
    return BACKBONE_SPECS[name]


@keras.saving.register_keras_serializable(package="keras_instance")
class PixelPreprocess(layers.Layer):
    """keras.applications preprocessing as a layer: 'caffe' (BGR, ImageNet mean), 'tf'
    ([-1, 1]) or 'unit' ([0, 1])."""

    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "unit"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        bgr = x[..., ::-1]
        return bgr - keras.ops.convert_to_tensor(self._CAFFE_MEAN_BGR, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _load(app: keras.Model, weights, build, include_top: bool) -> None:
    if weights is None:
        return
    if weights == "imagenet":
        # Build the reference model with downloaded weights, then copy: works for any input size.
        ref = build(include_top=include_top, weights="imagenet")
        app.set_weights(ref.get_weights())
        return
    try:
        app.load_weights(weights)
    except Exception as err:  # the Keras message alone rarely says which file
        raise ValueError(f"could not load backbone weights from {weights!r} into {app.name} "
                         f"(include_top={include_top}): {err}. The file must come from the same "
                         "keras.applications architecture.") from err


def _pooled_application(build, x, weights):
    """A keras.applications CNN, pooled (pool5), fully convolutional: any input size (training
    feeds S × S, the keep_aspect test geometry more)."""
    app = build(include_top=False, weights=None, input_shape=(None, None, 3), pooling="avg")
    _load(app, weights, build, include_top=False)
    return app(x)


@register_backbone("resnet50", "caffe", "pooled",
                   ("conv5_block3_1_conv", "conv5_block1_1_conv", "conv4_block6_1_conv"))
def _resnet50(x, weights, input_shape, **_):
    return _pooled_application(keras.applications.ResNet50, x, weights)


@register_backbone("resnet152", "caffe", "pooled",
                   ("conv5_block3_1_conv", "conv5_block1_1_conv", "conv4_block36_1_conv"))
def _resnet152(x, weights, input_shape, **_):
    return _pooled_application(keras.applications.ResNet152, x, weights)


@register_backbone("mobilenet_v2", "tf", "pooled",
                   ("Conv_1", "block_16_expand", "block_15_expand", "block_14_expand"))
def _mobilenet_v2(x, weights, input_shape, **_):
    return _pooled_application(keras.applications.MobileNetV2, x, weights)


@register_backbone("vgg19", "caffe", "fc", ("fc1", "block5_conv1"))
def _vgg19(x, weights, input_shape, vgg_fc7="pre_relu", **_):
    """fc7 of the classification top (needs 224×224), before its ReLU as the authors take it."""
    if tuple(input_shape) != (224, 224, 3):
        raise ValueError("vgg19 uses fc7, which needs input_shape=(224, 224, 3)")
    build = keras.applications.VGG19
    app = build(include_top=True, weights=None, input_shape=(224, 224, 3))
    _load(app, weights, build, include_top=True)
    if vgg_fc7 == "pre_relu":  # keras' fc2 applies the ReLU inside the layer
        app.get_layer("fc2").activation = keras.activations.linear
    elif vgg_fc7 != "post_relu":
        raise ValueError(f"vgg_fc7 must be 'pre_relu' or 'post_relu', got {vgg_fc7!r}")
    return keras.Model(app.input, app.get_layer("fc2").output, name="vgg19_fc7")(x)


@register_backbone("tiny_cnn", "unit", "flatten")
def _tiny_cnn(x, weights, input_shape, sync_bn=False, width: int = 32, **_):
    """Four strided conv blocks, then flatten: keeps *where* things are (the demo asks 'left
    of'); random or file weights only (no ImageNet ones), loaded by `build_backbone`."""
    if weights == "imagenet":
        raise ValueError("tiny_cnn has no ImageNet weights; use weights=None or a file path")
    for i, filters in enumerate((width, 2 * width, 4 * width, 4 * width)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                          name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(synchronized=sync_bn, name=f"conv{i + 1}_bn")(x)
        x = layers.ReLU(name=f"conv{i + 1}_relu")(x)
    x = layers.Conv2D(width, 1, use_bias=False, name="reduce")(x)
    x = layers.BatchNormalization(synchronized=sync_bn, name="reduce_bn")(x)
    x = layers.ReLU(name="reduce_relu")(x)
    return layers.Flatten(name="flatten")(x)


BACKBONES = tuple(BACKBONE_SPECS)
if BACKBONES != BACKBONE_NAMES:  # the flag choices are listed without importing this module
    raise RuntimeError(f"model/backbone_names.py lists {BACKBONE_NAMES}, the registry holds "
                       f"{BACKBONES}: keep them the same")


def build_backbone(name: str, weights: str | None = None, input_shape=(224, 224, 3),
                   sync_bn: bool = False, vgg_fc7: str = "pre_relu") -> keras.Model:
    """Backbone model: pixels [B, H, W, 3] in [0, 255] → pooled feature [B, D].

    `sync_bn` applies to the backbones built here (tiny_cnn); keras.applications models keep
    their own per-replica BN. `vgg_fc7`: VGG-19's feature before its ReLU or after.
    """
    kind = spec(name)
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise FileNotFoundError(
            f"backbone weights file {weights!r} does not exist; pass a path to a Keras "
            f"weights file for {name} (no top), 'imagenet' to download, or None")
    pixels = keras.Input(shape=input_shape, name="pixels")
    x = PixelPreprocess(kind.preprocessing, name="preprocess")(pixels)
    model = keras.Model(pixels, kind.builder(x, weights, input_shape, sync_bn=sync_bn,
                                             vgg_fc7=vgg_fc7), name="backbone")
    if kind.kind == "flatten" and weights:  # built here, not by keras.applications
        model.load_weights(weights)
    return model


# --- every training-sized window of a larger image (keep_aspect test geometry) -----------------

def _application(backbone: keras.Model) -> keras.Model:
    return next(layer for layer in backbone.layers if isinstance(layer, keras.Model))


def _window_count(train_size: int) -> int:
    """Cells of the last feature map at the training size (7 for 224 px at stride 32)."""
    return max(train_size // 32, 1)


def window_features(backbone: keras.Model, backbone_name: str, pixels: tf.Tensor,
                    train_size: int) -> tf.Tensor:
    """pixels [B, H, W, 3] (H, W ≥ train_size) → pooled feature of every window [B, P, D].

    A window is train_size² pixels at stride 32: the feature the backbone gives a train_size
    crop there, computed once over the whole map.
    """
    kind = spec(backbone_name)
    if not kind.has_windows:
        raise ValueError(f"{backbone_name} flattens a fixed-size map: it has no per-window "
                         "features; use --test_geometry=squash")
    cells = _window_count(train_size)
    x = backbone.get_layer("preprocess")(pixels)
    app = _application(backbone)
    if kind.kind == "pooled":
        trunk = keras.Model(app.input, app.layers[-1].input)  # the map before global pooling
        grid = tf.nn.avg_pool2d(trunk(x, training=False), cells, 1, "VALID")
    else:  # VGG: fc6 as a 7×7 convolution, fc7 as a 1×1 one (their weights, reshaped)
        grid = _vgg_fc_windows(app, x, cells)
    return tf.reshape(grid, [tf.shape(grid)[0], -1, grid.shape[-1]])


def _vgg_fc_windows(app: keras.Model, x: tf.Tensor, cells: int) -> tf.Tensor:
    for layer in app.layers[1:]:
        if layer.name == "flatten":
            break
        x = layer(x)  # the convolutional layers, which take any size
    fc1, fc2 = app.get_layer("fc1"), app.get_layer("fc2")
    kernel = tf.reshape(fc1.kernel, [cells, cells, x.shape[-1], -1])  # Flatten is (h, w, c)
    x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID") + fc1.bias)
    x = tf.tensordot(x, fc2.kernel, 1) + fc2.bias
    return fc2.activation(x)


# --- a frozen prefix and a trainable suffix (--finetune_from) ----------------------------------

@dataclasses.dataclass
class SplitBackbone:
    """One backbone as prefix (frozen, cacheable) and suffix (trained), sharing its layers."""
    prefix: keras.Model     # pixels [B, S, S, 3] → feature maps at the split [B, h, w, c]
    suffix: keras.Model     # those maps → the backbone's pooled feature [B, D]
    layer: str

    @property
    def map_shape(self) -> tuple:
        return tuple(int(d) for d in self.prefix.output.shape[1:])


def split_backbone(backbone: keras.Model, backbone_name: str, layer: str,
                   image_size: int) -> SplitBackbone:
    """Split `backbone` so that `layer` and everything after it form the suffix.

    The input of `layer` must alone determine the rest of the network (the first layer of a
    block, not one inside a residual block); the suffix then re-joins to the original output
    exactly (tests/test_finetune.py checks every backbone).
    """
    kind = spec(backbone_name)
    if kind.kind == "flatten":
        raise ValueError(f"--finetune_from needs a keras.applications backbone, not "
                         f"{backbone_name}")
    app = _application(backbone)
    examples = ", ".join(kind.split_examples)
    try:
        target = app.get_layer(layer)
    except ValueError:
        raise ValueError(f"--finetune_from={layer}: {backbone_name} has no layer {layer!r}; "
                         f"split points to try: {examples}") from None
    if isinstance(target.input, (list, tuple)):
        raise ValueError(f"--finetune_from={layer}: {layer} has several inputs; split at the "
                         f"first layer of a block instead, e.g. {examples}")
    try:
        suffix = keras.Model(target.input, app.output, name=f"suffix_from_{layer}")
    except ValueError:
        raise ValueError(f"--finetune_from={layer}: the network after {layer} also needs "
                         f"tensors from before it (a split inside a residual block); split at "
                         f"the first layer of a block instead, e.g. {examples}") from None
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    trunk = keras.Model(app.input, target.input, name=f"prefix_to_{layer}")
    prefix = keras.Model(pixels, trunk(backbone.get_layer("preprocess")(pixels)),
                         name=f"prefix_to_{layer}_from_pixels")
    return SplitBackbone(prefix, suffix, layer)


def freeze_prefix(split: SplitBackbone) -> None:
    """Only the suffix trains: prefix layers frozen (their BN in inference mode), suffix not."""
    suffix_layers = {id(layer) for layer in split.suffix.layers}
    for layer in split.prefix.layers[-1].layers:  # the trunk's layers
        if id(layer) not in suffix_layers:
            layer.trainable = False
    for layer in split.suffix.layers:
        layer.trainable = True
