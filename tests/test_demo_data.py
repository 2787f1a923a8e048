"""The generated demo dataset: instance-level captions, splits, readable by the manifest reader."""
import json
import os

from PIL import Image

from keras_instance.data import readers
from keras_instance.data.demo import generate_demo


def test_demo_data_flows_through_the_manifest_reader(tmp_path):
    path = generate_demo(str(tmp_path), num_train=20, num_val=3, num_test=5, image_size=32, seed=1)
    records = readers.read_dataset("demo", str(tmp_path))  # validates: images, captions, ids
    assert [sum(r.split == s for r in records) for s in ("train", "val", "test")] == [20, 3, 5]
    for r in records:
        assert len(set(r.captions)) >= 5  # five differently worded captions
        with Image.open(r.image_path) as im:
            assert im.size == (32, 32)
    # Every picture is its own instance: no two share their first (complete) caption.
    assert len({r.captions[0] for r in records}) == len(records)
    words = " ".join(c for r in records for c in r.captions).split()
    for kind in ("left", "right", "small", "large", "two", "red"):
        assert kind in words or any(kind in w for w in words)
    assert os.path.basename(path) == "manifest.jsonl"


def test_demo_generation_is_deterministic_and_idempotent(tmp_path):
    a = generate_demo(str(tmp_path / "a"), 6, 1, 2, 32, seed=5)
    b = generate_demo(str(tmp_path / "b"), 6, 1, 2, 32, seed=5)
    with open(a) as fa, open(b) as fb:
        assert fa.read() == fb.read()
    mtime = os.path.getmtime(a)
    assert generate_demo(str(tmp_path / "a"), 6, 1, 2, 32, seed=5) == a
    assert os.path.getmtime(a) == mtime  # same settings: kept, not rewritten
    with open(a) as f:
        first = json.loads(f.readline())
    assert set(first) == {"id", "image", "split", "captions"}
