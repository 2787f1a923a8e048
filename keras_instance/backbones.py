"""Image backbones: keras.applications CNNs (and a tiny CNN for demos/tests) as pooled features.

Every backbone takes float RGB pixels in [0, 255] and does its own preprocessing inside the graph,
so exported models accept plain decoded images. `weights` follows keras.applications:
"imagenet" (downloads; needs internet), a path to a weights file (offline), or None (random).
"""
from __future__ import annotations

import os

import keras
from keras import layers

# name → (constructor, preprocessing mode, builds with pooling="avg")
_APPLICATIONS = {
    "resnet50": ("ResNet50", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "mobilenet_v2": ("MobileNetV2", "tf"),
}
BACKBONES = tuple(_APPLICATIONS) + ("tiny_cnn",)


@keras.saving.register_keras_serializable(package="keras_instance")
class PixelPreprocess(layers.Layer):
    """keras.applications preprocessing as a layer: 'caffe' (BGR, ImageNet mean) or 'tf' ([-1, 1])."""

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


def _tiny_cnn(inputs, width: int = 32, sync_bn: bool = False):
    """Four strided conv blocks, then flatten: keeps *where* things are (the demo asks 'left of')."""
    x = inputs
    for i, filters in enumerate((width, 2 * width, 4 * width, 4 * width)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(synchronized=sync_bn, name=f"conv{i + 1}_bn")(x)
        x = layers.ReLU(name=f"conv{i + 1}_relu")(x)
    x = layers.Conv2D(width, 1, use_bias=False, name="reduce")(x)
    x = layers.BatchNormalization(synchronized=sync_bn, name="reduce_bn")(x)
    x = layers.ReLU(name="reduce_relu")(x)
    return layers.Flatten(name="flatten")(x)


def build_backbone(name: str, weights: str | None = None, input_shape=(224, 224, 3),
                   sync_bn: bool = False) -> keras.Model:
    """Backbone model: pixels [B, H, W, 3] in [0, 255] → pooled feature [B, D].

    `sync_bn` applies to tiny_cnn; keras.applications models keep their own per-replica BN.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise FileNotFoundError(
            f"backbone weights file {weights!r} does not exist; pass a path to a Keras "
            f"weights file for {name} (no top), 'imagenet' to download, or None")
    pixels = keras.Input(shape=input_shape, name="pixels")
    if name == "tiny_cnn":
        features = _tiny_cnn(PixelPreprocess("unit", name="preprocess")(pixels), sync_bn=sync_bn)
        model = keras.Model(pixels, features, name="backbone")
        if weights == "imagenet":
            raise ValueError("tiny_cnn has no ImageNet weights; use weights=None or a file path")
        if weights:
            model.load_weights(weights)
        return model
    constructor, mode = _APPLICATIONS[name]
    app = _build_application(constructor, weights, input_shape)
    features = app(PixelPreprocess(mode, name="preprocess")(pixels))
    return keras.Model(pixels, features, name="backbone")


def _build_application(constructor: str, weights, input_shape) -> keras.Model:
    """The keras.applications model; VGG19 keeps its fc7 (needs 224×224), others pool pool5."""
    build = getattr(keras.applications, constructor)
    if constructor == "VGG19":
        # fc7 is part of the classification top; keras' fc2 already applies ReLU (the authors'
        # code takes fc7 before ReLU — the one documented difference).
        app = build(include_top=True, weights=None, input_shape=(224, 224, 3))
        if tuple(input_shape) != (224, 224, 3):
            raise ValueError("vgg19 uses fc7, which needs input_shape=(224, 224, 3)")
        _load(app, weights, build, include_top=True)
        return keras.Model(app.input, app.get_layer("fc2").output, name="vgg19_fc7")
    app = build(include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg")
    _load(app, weights, build, include_top=False)
    return app


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
