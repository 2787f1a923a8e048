"""Prefix cache (--finetune_from): the frozen part of the backbone run once, its maps on disk.

Stage II as the paper means it trains the backbone end to end; on a CPU, recomputing and
back-propagating all of it costs ~15 images/s. Splitting it (`backbones.split_backbone`) leaves
a frozen prefix whose output never changes: it runs once per cached view (view 0 the whole
image, then random crops/flips as in training, the Stage I cache's views), and training runs the
trainable suffix, heads and text CNN from the stored maps.

Storage: one float16 .npy of shape [N, views, h, w, c], memory-mapped, so maps larger than
memory (ResNet-50's conv4 output is 14×14×1024 per view) stream from disk; built by
`cache_file.build`, so a killed build resumes where it stopped and gives the same file. The
name carries a hash of everything the maps depend on (prefix weights, split layer, size, views,
augmentation and its crop and resize rules, seed, image list).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from keras_instance.data import pipeline
from keras_instance.model.backbones import SplitBackbone
from keras_instance.training import cache_file
from keras_instance.training.feature_cache import (
    progress_reporter,
    rules_key,
    view_batches,
    weights_fingerprint,
)

CHUNK_IMAGES = 256  # images per progress save


def cache_key(image_paths, split: SplitBackbone, image_size: int, views: int, flip: bool,
              crop_scale, seed: int, crop_rule: str = pipeline.CROP_RULE,
              resize_method: str = pipeline.RESIZE) -> str:
    """Hash of what the maps depend on; the crop and resize rules join it only where they are
    not the old ones (`feature_cache.rules_key`), so caches built before them keep their keys."""
    h = hashlib.sha256()
    h.update(json.dumps([split.layer, weights_fingerprint(split.prefix), image_size, views,
                         flip, list(crop_scale), seed]
                        + rules_key(crop_rule, resize_method)).encode())
    for p in image_paths:
        h.update(str(p).encode() + b"\0")
    return h.hexdigest()[:16]


def cache_path(cache_dir: str, backbone_name: str, split: SplitBackbone, image_paths,
               image_size: int, views: int, flip: bool, crop_scale, seed: int,
               crop_rule: str = pipeline.CROP_RULE, resize_method: str = pipeline.RESIZE) -> str:
    key = cache_key(image_paths, split, image_size, views, flip, crop_scale, seed, crop_rule,
                    resize_method)
    return os.path.join(cache_dir, f"{backbone_name}_prefix_{split.layer}_{image_size}px_"
                                   f"{views}views_{key}.npy")


def prefix_maps(cache_dir: str, backbone_name: str, split: SplitBackbone, image_paths,
                image_size: int, views: int = 1, flip: bool = True, crop_scale=(0.8, 1.0),
                seed: int = 0, batch_size: int = 64, log=print,
                on_chunk: Callable[[int], None] | None = None,
                crop_rule: str = pipeline.CROP_RULE,
                resize_method: str = pipeline.RESIZE) -> np.ndarray:
    """[N, views, h, w, c] float16 maps (memory-mapped), built once, resumed after a kill."""
    path = cache_path(cache_dir, backbone_name, split, image_paths, image_size, views, flip,
                      crop_scale, seed, crop_rule, resize_method)
    if os.path.exists(path):
        log(f"prefix cache: loading {path}")
        return np.load(path, mmap_mode="r")
    shape = (len(image_paths), views, *split.map_shape)
    predict = tf.function(lambda x: split.prefix(x, training=False), reduce_retracing=True)

    def batches(start):
        for batch in view_batches(image_paths, image_size, views, flip, crop_scale, seed,
                                  batch_size, start=start, crop_rule=crop_rule,
                                  resize_method=resize_method):
            n = int(batch.shape[0])
            flat = tf.reshape(batch, [-1, image_size, image_size, 3])
            yield predict(flat).numpy().reshape(n, views, *split.map_shape)

    cache_file.build(path, shape, np.float16, batches, "prefix cache",
                     f"{views} view(s) of {len(image_paths)} images through the frozen "
                     f"{backbone_name} up to {split.layer} "
                     f"({'×'.join(map(str, split.map_shape))} float16 per view)", log=log,
                     report=lambda done: progress_reporter(len(image_paths), "prefix cache",
                                                           done),
                     on_chunk=on_chunk, chunk_rows=CHUNK_IMAGES)
    return np.load(path, mmap_mode="r")


def features_from_maps(split: SplitBackbone, maps: np.ndarray, batch_size: int = 256,
                       log=print) -> np.ndarray:
    """[N, views, D] float32 pooled features of cached maps (the frozen suffix, test mode):
    Stage I's feature cache without a second pass of the backbone over the images."""
    n, views = maps.shape[:2]
    flat_count = n * views
    flat = maps.reshape(flat_count, *maps.shape[2:])
    predict = tf.function(lambda x: split.suffix(x, training=False), reduce_retracing=True)
    out = []
    for i in range(0, flat_count, batch_size):
        out.append(predict(tf.constant(np.asarray(flat[i:i + batch_size], np.float32))).numpy())
    log(f"prefix cache: pooled features of {flat_count} cached views through {split.suffix.name}")
    return np.concatenate(out).reshape(n, views, -1).astype(np.float32)
