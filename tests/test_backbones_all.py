"""Every keras.applications backbone builds with weights=None and gives METHOD.md's feature size."""
import numpy as np
import pytest

from keras_instance.backbones import build_backbone


@pytest.mark.parametrize("name, size, dim", [
    ("resnet50", 64, 2048), ("resnet152", 64, 2048), ("mobilenet_v2", 64, 1280),
    ("vgg19", 224, 4096),  # fc7 needs the 224×224 classification top
])
def test_backbone_feature_size(name, size, dim):
    model = build_backbone(name, None, (size, size, 3))
    out = model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
    assert out.shape == (1, dim)


def test_vgg19_rejects_other_sizes():
    with pytest.raises(ValueError, match="224"):
        build_backbone("vgg19", None, (128, 128, 3))
