"""k-means pseudo-labels (--labels=kmeans): clusters recover groups; a tiny run trains on K."""
import json
import os

import numpy as np
import pytest
from conftest import tiny_config

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.data import readers
from keras_instance.data.demo import generate_demo
from keras_instance.data.pipeline import TrainingSet
from keras_instance.data.records import split_records
from keras_instance.text import tokenizer
from keras_instance.training import pseudo_labels, stages


def test_well_separated_groups_are_recovered():
    from sklearn.metrics import adjusted_rand_score
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:4] * 10.0            # four directions, far apart after L2 norm
    truth = np.repeat(np.arange(4), 40)
    features = centres[truth] + rng.normal(0, 0.3, (len(truth), 16))
    order = rng.permutation(len(truth))
    found = pseudo_labels.kmeans_labels(features[order], 4, seed=1)
    assert found.dtype == np.int32 and set(found) == {0, 1, 2, 3}
    assert adjusted_rand_score(truth[order], found) == 1.0
    # Seeded: the same call gives the same ids.
    assert np.array_equal(found, pseudo_labels.kmeans_labels(features[order], 4, seed=1))


def test_bad_cluster_counts_are_refused():
    with pytest.raises(ValueError, match="num_clusters"):
        pseudo_labels.kmeans_labels(np.ones((5, 3)), 6)
    with pytest.raises(ValueError, match="num_clusters >= 2"):
        Config.flat(labels="kmeans", num_clusters=0).validate()
    with pytest.raises(ValueError, match="labels must be"):
        Config.flat(labels="people").validate()


@pytest.mark.slow
def test_kmeans_run_trains_on_k_classes_and_stage2_reuses_them(tmp_path):
    data, work, cache = str(tmp_path / "data"), str(tmp_path / "run"), str(tmp_path / "cache")
    generate_demo(data, num_train=48, num_val=2, num_test=8, image_size=32, seed=5)
    lines = []
    stages.train(tiny_config(data, work, feature_cache=cache, labels="kmeans", num_clusters=4,
                               stage1_lr_schedule="0.1:2", test_flip_sum=False),
                   1, verbose=0, log=lines.append)
    assert any("48 images, 4 classes" in line for line in lines), lines
    with open(os.path.join(work, "meta.json")) as f:
        assert json.load(f)["num_classes"] == 4
    path = pseudo_labels.labels_path(work)
    labels = np.load(path)
    assert labels.shape == (48,) and labels.min() >= 0 and labels.max() < 4
    assert len(np.unique(labels)) > 1
    # Clustering ran under Stage I's seed: the same random backbone, one shared cache entry.
    assert len(os.listdir(cache)) == 1

    config = Config.load(work)
    assert config.data.labels == "kmeans" and config.data.num_clusters == 4
    before = os.path.getmtime(path)
    messages = []
    summary = stages.train(config, 2, verbose=0, log=messages.append)
    assert summary["epochs"] == 1 and os.path.exists(summary["weights"])
    assert any("reusing" in m for m in messages) and os.path.getmtime(path) == before
    with open(os.path.join(work, "meta.json")) as f:
        assert json.load(f)["num_classes"] == 4

    # Each image's captions sit in its cluster's pool.
    records = split_records(readers.load(config.data), "train")
    vocab = tokenizer.Vocabulary.load(run_folder.path(work, run_folder.VOCAB))
    ts = TrainingSet.from_records(records, vocab, config.data.max_length, record_classes=labels,
                                  num_classes=4)
    assert np.array_equal(ts.image_classes, labels)
    expected = np.bincount(np.repeat(labels, [len(r.captions) for r in records]), minlength=4)
    assert np.array_equal(ts.class_count, expected)

    # Another K cannot silently reuse these clusters.
    with pytest.raises(ValueError, match="4 clusters"):
        pseudo_labels.prepare_kmeans_labels(config.replace(num_clusters=5),
                                            list(ts.image_paths))
