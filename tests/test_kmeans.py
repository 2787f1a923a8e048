"""k-means pseudo-labels (--labels=kmeans): clusters recover groups; a tiny run trains on K."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_instance import pseudo_labels, text, training
from keras_instance.config import Config
from keras_instance.data.demo import generate_demo
from keras_instance.data.pipeline import TrainingSet
from keras_instance.data.records import split_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--backbone=tiny_cnn", "--backbone_weights=none", "--test_geometry=squash", "--image_size=32",
        "--image_head_units=16", "--word_dim=8", "--text_widths=8,16,16,32",
        "--text_blocks=1,1,1,1", "--embed_dim=16", "--dropout=0.1", "--batch_size=16",
        "--negatives=hardest_in_batch", "--norandom_flip", "--notest_flip_sum",
        "--stage1_lr_schedule=0.1:2", "--stage2_lr_schedule=0.1:1"]


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
        Config(labels="kmeans", num_clusters=0).validate()
    with pytest.raises(ValueError, match="labels must be"):
        Config(labels="people").validate()


def test_kmeans_run_trains_on_k_classes_and_stage2_reuses_them(tmp_path):
    data, work, cache = str(tmp_path / "data"), str(tmp_path / "run"), str(tmp_path / "cache")
    generate_demo(data, num_train=48, num_val=2, num_test=8, image_size=32, seed=5)
    proc = subprocess.run(
        [sys.executable, "-m", "keras_instance.train", "--dataset=demo", f"--data_dir={data}",
         f"--workdir={work}", f"--feature_cache={cache}", *TINY, "--labels=kmeans",
         "--num_clusters=4", "--stage=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "48 images, 4 classes" in proc.stdout
    with open(os.path.join(work, "meta.json")) as f:
        assert json.load(f)["num_classes"] == 4
    path = pseudo_labels.labels_path(work)
    labels = np.load(path)
    assert labels.shape == (48,) and labels.min() >= 0 and labels.max() < 4
    assert len(np.unique(labels)) > 1
    # Clustering ran under Stage I's seed: the same random backbone, one shared cache entry.
    assert len(os.listdir(cache)) == 1

    config = Config.load(work)
    assert config.labels == "kmeans" and config.num_clusters == 4
    before = os.path.getmtime(path)
    messages = []
    summary = training.train(config, 2, verbose=0, log=messages.append)
    assert summary["epochs"] == 1 and os.path.exists(summary["weights"])
    assert any("reusing" in m for m in messages) and os.path.getmtime(path) == before
    with open(os.path.join(work, "meta.json")) as f:
        assert json.load(f)["num_classes"] == 4

    # Each image's captions sit in its cluster's pool.
    records = split_records(training.load_records(config), "train")
    vocab = text.Vocabulary.load(text.vocab_path(work))
    ts = TrainingSet.from_records(records, vocab, config.max_length, record_classes=labels,
                                  num_classes=4)
    assert np.array_equal(ts.image_classes, labels)
    expected = np.bincount(np.repeat(labels, [len(r.captions) for r in records]), minlength=4)
    assert np.array_equal(ts.class_count, expected)

    # Another K cannot silently reuse these clusters.
    with pytest.raises(ValueError, match="4 clusters"):
        pseudo_labels.prepare_kmeans_labels(dataclasses.replace(config, num_clusters=5),
                                            list(ts.image_paths))
