"""The Stage I feature cache survives a kill: rerun, it resumes where it stopped (issue 19,
item 4) and gives the file an uninterrupted build gives."""
import os

import keras
import numpy as np
import pytest

from keras_instance.data.demo import generate_demo
from keras_instance.model.backbones import build_backbone
from keras_instance.training import cache_file, feature_cache

SIZE = 32


def test_a_killed_feature_cache_build_resumes_and_gives_the_same_features(tmp_path, monkeypatch):
    generate_demo(str(tmp_path / "data"), num_train=40, num_val=2, num_test=2, image_size=40,
                  seed=4)
    paths = sorted(str(p) for p in (tmp_path / "data" / "images").glob("train_*.png"))
    keras.utils.set_random_seed(0)
    backbone = build_backbone("tiny_cnn", None, (SIZE, SIZE, 3))
    args = (backbone, "tiny_cnn", paths, SIZE, 3, True, (0.8, 1.0), 0)
    monkeypatch.setattr(cache_file, "CHUNK_ROWS", 8)
    cache = tmp_path / "cache"
    seen = []

    def kill(done):
        seen.append(done)
        if done >= 16:
            raise KeyboardInterrupt("simulated kill")
    with pytest.raises(KeyboardInterrupt):
        feature_cache.cached_features(str(cache), *args, batch_size=12, on_chunk=kill)
    assert [n for n in os.listdir(cache) if n.endswith(".partial.json")]

    lines, rows_after = [], []
    resumed = feature_cache.cached_features(str(cache), *args, batch_size=12, log=lines.append,
                                            on_chunk=rows_after.append)
    assert any(f"resuming at image {seen[-1]} of 40" in line for line in lines), lines
    assert rows_after[0] > seen[-1]  # the rerun computed only what was missing
    whole = feature_cache.cached_features(str(tmp_path / "again"), *args, batch_size=12)
    assert resumed.shape == (40, 3, int(backbone.output.shape[-1]))
    assert resumed.dtype == np.float32
    np.testing.assert_array_equal(resumed, whole)
    assert not [n for n in os.listdir(cache) if "partial" in n]
