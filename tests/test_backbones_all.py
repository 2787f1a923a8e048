"""Every keras.applications backbone builds with weights=None, gives docs/method.md's feature
size, and gives the same feature through its window view (the keep_aspect test geometry) on one
window."""
import numpy as np
import pytest
import tensorflow as tf

from keras_instance.model.backbones import build_backbone, spec, split_backbone, window_features


@pytest.mark.slow
@pytest.mark.parametrize("name, size, dim", [
    ("resnet50", 64, 2048), ("resnet152", 64, 2048), ("mobilenet_v2", 64, 1280),
    ("vgg19", 224, 4096),  # fc7 needs the 224×224 classification top
])
def test_backbone_feature_size_and_windows(name, size, dim):
    model = build_backbone(name, None, (size, size, 3))
    rng = np.random.default_rng(0)
    square = rng.uniform(0, 255, (1, size, size, 3)).astype("float32")
    pooled = model.predict(square, verbose=0)
    assert pooled.shape == (1, dim)
    if name == "vgg19":  # the authors' fc7 is taken before its ReLU (the default)
        assert pooled.min() < 0
    # one training-sized image is one window: the same feature, computed convolutionally
    one = window_features(model, name, tf.constant(square), size).numpy()
    assert one.shape == (1, 1, dim)
    np.testing.assert_allclose(one[0, 0], pooled[0], rtol=1e-4, atol=1e-4 * np.abs(pooled).max())
    # an image one stride (32 px) taller and two wider: 2 × 3 windows of the feature map (as
    # MatConvNet's fully convolutional nets see it; not crops: receptive fields overlap)
    wide = rng.uniform(0, 255, (1, size + 32, size + 64, 3)).astype("float32")
    grid = window_features(model, name, tf.constant(wide), size).numpy()
    assert grid.shape == (1, 6, dim) and np.all(np.isfinite(grid))
    # --finetune_from: every listed split point splits it and the two halves re-join exactly
    for layer in spec(name).split_examples:
        split = split_backbone(model, name, layer, size)
        maps = split.prefix(square, training=False)
        rejoined = split.suffix(maps, training=False).numpy()
        np.testing.assert_allclose(rejoined, pooled, rtol=1e-5, atol=1e-5 * np.abs(pooled).max(),
                                   err_msg=layer)


@pytest.mark.slow
def test_vgg19_rejects_other_sizes_and_takes_fc7_after_relu_on_request():
    """(Before its ReLU, the default: test_backbone_feature_size_and_windows.)"""
    with pytest.raises(ValueError, match="224"):
        build_backbone("vgg19", None, (128, 128, 3))
    x = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    post = build_backbone("vgg19", None, vgg_fc7="post_relu").predict(x, verbose=0)
    assert post.min() >= 0 and post.max() > 0
