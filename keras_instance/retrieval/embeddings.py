"""Test-time embeddings of images and captions: what evaluation ranks and indexes search.

Test-time features follow docs/method.md: an image's embedding is the second fc + BN output (before
ReLU; `test_feature="relu"` takes it after the ReLU, where the ranking loss trains) of the whole
image at short side 256 (aspect kept), summed over every position of the feature map
(`test_geometry="keep_aspect"`; "squash" resizes to image_size²), plus the same for the flipped
image (`test_flip_sum`). With `squash_to` (the authors' CUHK-PEDES geometry) every image is
first squashed to that square, then tested whole: keep_aspect at its side sums the map's
windows (2 × 2 for ResNet-50 at 256, their test_cuhk/extract_pic_feature_word2_plus.m). Every
resize is the run's `resize_method` (`pipeline.resize`, as in training). A caption's is summed
over every Position-Shift offset (`test_shift_sum`). Both are L2-normalised; the score is their
dot product.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.model.dual_path import DualPath


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embed_images(image_encoder: keras.Model, image_paths, image_size: int, flip_sum: bool = True,
                 batch_size: int = 64, feature: str = "embedding",
                 square: int = 0, resize_method: str = pipeline.RESIZE) -> np.ndarray:
    """[N, D] L2-normalised image embeddings (whole image, squashed to `square`² first where
    set, then to image_size², plus its mirror image if flip_sum)."""
    paths = tf.constant([str(p) for p in image_paths])
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: pipeline.eval_pixels(pipeline.decode_image(tf.io.read_file(p)), "squash",
                                       image_size, 0, square, resize_method),
        num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    predict = tf.function(lambda x: image_encoder(x, training=False)[feature],
                          reduce_retracing=True)
    out = []
    for images in ds:
        emb = predict(images)
        if flip_sum:
            emb = emb + predict(tf.image.flip_left_right(images))
        out.append(emb.numpy())
    return l2_normalize(np.concatenate(out).astype(np.float32))


def embed_images_keep_aspect(dual: DualPath, image_paths, short_side: int, flip_sum: bool = True,
                             batch_size: int = 64, feature: str = "embedding",
                             square: int = 0,
                             resize_method: str = pipeline.RESIZE) -> np.ndarray:
    """[N, D] L2-normalised embeddings of whole images at short side `short_side`, aspect kept
    (of their `square`² squash where set), the head summed over the map's windows.

    Images of one resized shape go through the network together (a copy of Flickr8k resized
    to one size is one batch stream); the result does not depend on the grouping.
    """
    paths = tf.constant([str(p) for p in image_paths])
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(image_paths)), paths)).map(
        lambda i, p: (i, pipeline.eval_pixels(pipeline.decode_image(tf.io.read_file(p)),
                                              "keep_aspect", dual.image_size, short_side,
                                              square, resize_method)),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    @tf.function(reduce_retracing=True)
    def predict(images):
        emb = dual.window_embedding(images, feature)
        if flip_sum:
            emb = emb + dual.window_embedding(tf.image.flip_left_right(images), feature)
        return emb

    embedded: dict[int, np.ndarray] = {}
    pending: dict[tuple, list] = {}

    def flush(shape):
        rows = pending.pop(shape)
        emb = predict(tf.stack([image for _, image in rows])).numpy()
        embedded.update(zip((i for i, _ in rows), emb))

    for index, image in ds:
        pending.setdefault(tuple(image.shape), []).append((int(index), image))
        if len(pending[tuple(image.shape)]) == batch_size:
            flush(tuple(image.shape))
    for shape in list(pending):
        flush(shape)
    out = np.stack([embedded[i] for i in range(len(image_paths))]).astype(np.float32)
    return l2_normalize(out)


def embed_token_ids(text_encoder: keras.Model, tokens: np.ndarray, shift_sum: bool = True,
                    batch_size: int = 512, feature: str = "embedding") -> np.ndarray:
    """[N, D] L2-normalised caption embeddings, summed over all Position-Shift offsets if asked."""
    rows, owner = pipeline.all_shifts(tokens) if shift_sum else (tokens, np.arange(len(tokens)))
    predict = tf.function(lambda x: text_encoder(x, training=False)[feature],
                          reduce_retracing=True)
    summed = None
    for i in range(0, len(rows), batch_size):
        emb = predict(tf.constant(rows[i:i + batch_size])).numpy().astype(np.float64)
        if summed is None:
            summed = np.zeros((len(tokens), emb.shape[1]), np.float64)
        np.add.at(summed, owner[i:i + batch_size], emb)
    return l2_normalize(summed.astype(np.float32))


def config_image_embeddings(config: Config, dual: DualPath, image_paths,
                            batch_size: int | None = None) -> np.ndarray:
    """Image embeddings with a run's test-time settings (geometry, flip-sum, feature, batch),
    its squash_to and its resize method."""
    t, square, method = config.test, config.image.squash_to, config.image.resize_method
    batch_size = batch_size or t.eval_batch_size
    if t.test_geometry == "keep_aspect":
        return embed_images_keep_aspect(dual, image_paths, config.short_side, t.test_flip_sum,
                                        batch_size, t.test_feature, square, method)
    return embed_images(dual.image_encoder(), image_paths, config.image.image_size,
                        t.test_flip_sum, batch_size, feature=t.test_feature, square=square,
                        resize_method=method)


def config_token_embeddings(config: Config, dual: DualPath, tokens: np.ndarray) -> np.ndarray:
    """`embed_token_ids` with a run's test-time settings (shift-sum, feature)."""
    return embed_token_ids(dual.text_encoder, tokens, config.test.test_shift_sum,
                           feature=config.test.test_feature)
