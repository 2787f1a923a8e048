"""TFRecord shards of a dataset split, so big datasets stream from disk instead of memory.

Each example holds one image's original file bytes (not re-encoded: training decodes exactly
what the folder pipeline would), its captions, its instance label and its row in the split
(`index`, the row of `TrainingSet` the training pipeline pairs it with). `shards.json` beside
the shards records what was written, so training can check it reads the data it expects.

Written by `python -m keras_instance.cli.prepare`; read by `train_dataset(..., shards=...)`.
"""
from __future__ import annotations

import contextlib
import json
import os

import tensorflow as tf

from keras_instance.data.records import Record

INDEX_FILE = "shards.json"
_FEATURES = {
    "index": tf.io.FixedLenFeature([], tf.int64),
    "image": tf.io.FixedLenFeature([], tf.string),
}


def _bytes(values) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def example_bytes(index: int, record: Record) -> bytes:
    with open(record.image_path, "rb") as f:
        image = f.read()
    features = {
        "index": _int(index),
        "image": _bytes([image]),
        "image_id": _bytes([record.image_id.encode()]),
        "image_path": _bytes([record.image_path.encode()]),
        "captions": _bytes(c.encode() for c in record.captions),
        "label": _int(record.label),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_paths(out_dir: str, split: str, num_shards: int) -> list[str]:
    return [os.path.join(out_dir, f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord")
            for i in range(num_shards)]


def write_shards(records: list[Record], out_dir: str, split: str, num_shards: int,
                 source: dict | None = None, log=print) -> list[str]:
    """Write `records` (one split, in order) round-robin into `num_shards` files.

    Files are written under temporary names and renamed at the end, and `shards.json` is
    updated last: an interrupted run never leaves shards that look complete.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    if len(records) < num_shards:
        raise ValueError(f"{len(records)} {split} images cannot fill {num_shards} shards: use "
                         f"--num_shards={max(len(records), 1)} or fewer")
    os.makedirs(out_dir, exist_ok=True)
    paths = shard_paths(out_dir, split, num_shards)
    writers = [tf.io.TFRecordWriter(p + ".partial") for p in paths]
    try:
        for i, record in enumerate(records):
            writers[i % num_shards].write(example_bytes(i, record))
            if log and (i + 1) % 10000 == 0:
                log(f"{split}: {i + 1}/{len(records)} images written")
    finally:
        for w in writers:
            w.close()
    for p in paths:
        os.replace(p + ".partial", p)
    index_path = os.path.join(out_dir, INDEX_FILE)
    index = {}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index[split] = {"num_examples": len(records), "num_shards": num_shards,
                    "files": [os.path.basename(p) for p in paths], **(source or {})}
    with open(index_path + ".partial", "w") as f:
        json.dump(index, f, indent=2)
    os.replace(index_path + ".partial", index_path)
    return paths


def read_index(shard_dir: str, split: str) -> dict:
    """The `shards.json` entry of `split`, with full file paths; errors say how to make it."""
    path = os.path.join(shard_dir, INDEX_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: write the shards first with "
                                f"python -m keras_instance.cli.prepare --out={shard_dir}")
    with open(path) as f:
        index = json.load(f)
    if split not in index:
        raise ValueError(f"{path} has no {split!r} split (it has: {', '.join(index)}); run "
                         f"keras_instance.cli.prepare with --splits={split}")
    entry = dict(index[split])
    entry["paths"] = [os.path.join(shard_dir, name) for name in entry["files"]]
    missing = [p for p in entry["paths"] if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard file(s) listed in {path} are missing, "
                                f"e.g. {missing[0]}: rerun keras_instance.cli.prepare")
    return entry


@contextlib.contextmanager
def _tensor_seeds_allowed(seed):
    """Lets `Dataset.shuffle` take a tensor seed whatever the global seed.

    With the global seed 0 (`keras.utils.set_random_seed(0)`, or `--seed=-1` in Stage I),
    TensorFlow's `random_seed.get_seed` compares the pair (0, seed) with (0, 0), which calls
    bool() on the tensor and fails while the training pipeline is traced. Inside a traced
    function with that graph seed, the seed is unset for these two shuffles, so TensorFlow pairs
    the tensor with its default graph seed: the order still comes from `seed` alone.
    """
    graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
    if graph is None or not isinstance(seed, tf.Tensor) or graph.seed != 0:
        yield
        return
    graph.seed = None
    try:
        yield
    finally:
        graph.seed = 0


def image_stream(shard_dir: str, split: str, expected_examples: int, seed,
                 shuffle_buffer: int = 2048) -> tf.data.Dataset:
    """(index, image bytes) of every example once per pass, in an order fixed by `seed` (an int
    or an int64 scalar tensor: the training pipeline passes one per epoch).

    Shard order is shuffled, shards are interleaved, and examples pass through a bounded shuffle
    buffer: memory stays at `shuffle_buffer` images whatever the dataset size.
    """
    entry = read_index(shard_dir, split)
    if entry["num_examples"] != expected_examples:
        raise ValueError(f"shards in {shard_dir} hold {entry['num_examples']} {split} images but "
                         f"the dataset has {expected_examples}: they were prepared from other "
                         "data; rerun keras_instance.cli.prepare")
    with _tensor_seeds_allowed(seed):
        files = tf.data.Dataset.from_tensor_slices(entry["paths"]).shuffle(
            len(entry["paths"]), seed=seed, reshuffle_each_iteration=False)
        records = files.interleave(tf.data.TFRecordDataset,
                                   cycle_length=min(len(entry["paths"]), 8),
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, _FEATURES)
        return parsed["index"], parsed["image"]

    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def read_examples(path: str) -> list[dict]:
    """Every example of one shard file as Python values (tests, inspection)."""
    out = []
    for serialized in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(serialized.numpy())
        f = example.features.feature
        out.append({
            "index": f["index"].int64_list.value[0],
            "image": f["image"].bytes_list.value[0],
            "image_id": f["image_id"].bytes_list.value[0].decode(),
            "image_path": f["image_path"].bytes_list.value[0].decode(),
            "captions": [c.decode() for c in f["captions"].bytes_list.value],
            "label": f["label"].int64_list.value[0],
        })
    return out
