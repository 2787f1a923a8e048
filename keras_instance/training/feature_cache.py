"""Stage I feature cache: the frozen backbone's outputs, computed once instead of every epoch.

In Stage I the backbone never changes, yet the authors' code recomputes it for hundreds of
epochs. Here it runs once over K views of every image (view 0: the whole image; views 1..K−1:
random crops and flips as in training), and Stage I trains the head, text CNN and classifier
from the stored arrays. The file name carries everything the features depend on, so a changed
backbone, weight file, size, view count, geometry (`squash_to`), crop or resize rule or image
list never reuses a stale cache; a build killed part-way resumes where it stopped
(`cache_file`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_instance.config import V3_VALUES
from keras_instance.data import pipeline
from keras_instance.training import cache_file


def weights_fingerprint(model: keras.Model) -> str:
    """Hash of the backbone's actual weight values: a random init never matches another's cache."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


def cache_key(image_paths, backbone: keras.Model, image_size: int, views: int, flip: bool,
              crop_scale, seed: int, square: int = 0, crop_rule: str = pipeline.CROP_RULE,
              resize_method: str = pipeline.RESIZE) -> str:
    """Hash of what the features depend on; `square` (squash_to) joins it only where set, and
    the crop and resize rules only where they are not the old ones (`rules_key`), so caches
    built before them keep their names."""
    h = hashlib.sha256()
    h.update(json.dumps([backbone.name, weights_fingerprint(backbone), image_size, views, flip,
                         list(crop_scale), seed] + ([square] if square else [])
                        + rules_key(crop_rule, resize_method)).encode())
    for p in image_paths:
        h.update(str(p).encode() + b"\0")
    return h.hexdigest()[:16]


def rules_key(crop_rule: str, resize_method: str) -> list:
    """What a cache key adds for the crop and resize rules: nothing for the rules every cache
    was built with before config_version 4 (side, bilinear), so those keep their keys."""
    rules = {name: value for name, value in (("crop_rule", crop_rule),
                                             ("resize_method", resize_method))
             if value != V3_VALUES[name]}
    return [rules] if rules else []


def view_batches(image_paths, image_size: int, views: int, flip: bool = True,
                 crop_scale=(0.8, 1.0), seed: int = 0, batch_size: int = 64,
                 start: int = 0, square: int = 0, crop_rule: str = pipeline.CROP_RULE,
                 resize_method: str = pipeline.RESIZE) -> tf.data.Dataset:
    """Batches of [n, views, S, S, 3] pixels: view 0 the whole image, then augmented views,
    all of the image squashed to `square`² first where set, cut and resized by training's
    rules (`pipeline.augment`).

    Each image's views depend only on `seed` and its position, so a build resumed at `start`
    produces the same views as an uninterrupted one.
    """
    paths = tf.constant([str(p) for p in image_paths])

    def load(index, rng):
        image = pipeline.squash(pipeline.decode_image(tf.io.read_file(paths[index])), square,
                                resize_method)
        whole = pipeline.resize(image, [image_size, image_size], resize_method)
        out = [whole]
        seeds = tf.random.experimental.stateless_split(tf.cast(rng, tf.int64), max(views, 1))
        for v in range(1, views):
            out.append(pipeline.augment(image, image_size, seeds[v], flip, crop_scale,
                                        crop_rule=crop_rule, resize_method=resize_method))
        return tf.stack(out)

    ds = tf.data.Dataset.zip(tf.data.Dataset.range(len(image_paths)),
                             tf.data.Dataset.random(seed=seed).batch(2)).skip(start)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(max(batch_size // views, 1))
    return ds.prefetch(tf.data.AUTOTUNE)


def compute_features(backbone: keras.Model, image_paths, image_size: int, views: int = 1,
                     flip: bool = True, crop_scale=(0.8, 1.0), seed: int = 0,
                     batch_size: int = 64, progress: bool = True, square: int = 0,
                     crop_rule: str = pipeline.CROP_RULE,
                     resize_method: str = pipeline.RESIZE) -> np.ndarray:
    """[N, views, D] float32 backbone outputs: view 0 the whole image, then augmented views."""
    predict = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    report = progress_reporter(len(image_paths), "feature cache") if progress else (
        lambda n: None)
    chunks = []
    for batch in view_batches(image_paths, image_size, views, flip, crop_scale, seed,
                              batch_size, square=square, crop_rule=crop_rule,
                              resize_method=resize_method):
        n = tf.shape(batch)[0]
        flat = tf.reshape(batch, [-1, image_size, image_size, 3])
        feats = predict(flat).numpy()
        chunks.append(feats.reshape(int(n), views, -1))
        report(int(n))
    return np.concatenate(chunks).astype(np.float32)


def progress_reporter(total: int, what: str, done: int = 0):
    """add(n): a progress bar on a terminal; in a redirected log, a plain line every 10 %."""
    if sys.stdout.isatty():
        bar = keras.utils.Progbar(total, unit_name="image")
        bar.update(done)
        return bar.add
    state = {"done": done, "shown": done * 10 // max(total, 1)}

    def add(n):
        state["done"] += n
        if state["done"] * 10 // total > state["shown"] or state["done"] == total:
            state["shown"] = state["done"] * 10 // total
            print(f"{what}: {state['done']}/{total} images", flush=True)
    return add


def cached_features(cache_dir: str, backbone: keras.Model, backbone_name: str,
                    image_paths, image_size: int, views: int = 1, flip: bool = True,
                    crop_scale=(0.8, 1.0), seed: int = 0, batch_size: int = 64, log=print,
                    on_chunk=None, square: int = 0, crop_rule: str = pipeline.CROP_RULE,
                    resize_method: str = pipeline.RESIZE) -> np.ndarray:
    """Load the features for these settings from `cache_dir`, computing and storing them once
    (`cache_file.build`: a killed build resumes where it stopped)."""
    key = cache_key(image_paths, backbone, image_size, views, flip, crop_scale, seed, square,
                    crop_rule, resize_method)
    squashed = f"_from{square}sq" if square else ""
    path = os.path.join(cache_dir,
                        f"{backbone_name}_{image_size}px{squashed}_{views}views_{key}.npy")
    if os.path.exists(path):
        log(f"feature cache: loading {path}")
        return np.load(path)
    predict = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    shape = (len(image_paths), views, int(backbone.output.shape[-1]))

    def batches(start):
        for batch in view_batches(image_paths, image_size, views, flip, crop_scale, seed,
                                  batch_size, start=start, square=square, crop_rule=crop_rule,
                                  resize_method=resize_method):
            n = int(batch.shape[0])
            flat = tf.reshape(batch, [-1, image_size, image_size, 3])
            yield predict(flat).numpy().reshape(n, views, -1)

    cache_file.build(path, shape, np.float32, batches, "feature cache",
                     f"computing {views} view(s) of {len(image_paths)} images", log=log,
                     report=lambda done: progress_reporter(len(image_paths), "feature cache",
                                                           done),
                     on_chunk=on_chunk)
    return np.load(path)
