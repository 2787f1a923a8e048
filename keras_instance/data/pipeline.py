"""tf.data input: images, augmentation, Position Shift, and (image, caption, instance) batches.

Captions are tokenised once, up front, with the serving graph's own `text.token_ids`; the
training pipeline then carries only int32 ids (MirroredStrategy cannot feed tf.string). Every
random choice is stateless and derived from `seed`, so a run is reproducible.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from keras_instance.data.records import Record
from keras_instance.data.shards import image_stream
from keras_instance.text.tokenizer import PAD_ID, Vocabulary, encode_captions

AUTOTUNE = tf.data.AUTOTUNE
# The crop and resize rules, as config.CROP_RULES / RESIZE_METHODS name them (data does not import
# config); the authors' first, the defaults.
CROP_RULES = ("area", "side")
RESIZE_METHODS = ("bicubic_antialias", "bilinear")
CROP_RULE, RESIZE = CROP_RULES[0], RESIZE_METHODS[0]


@dataclasses.dataclass
class TrainingSet:
    """Training records as arrays: one row per image, captions grouped by instance class."""
    image_paths: np.ndarray      # [N] str
    image_classes: np.ndarray    # [N] int32, contiguous 0..C−1
    caption_tokens: np.ndarray   # [M, L] int32, sorted by class
    caption_classes: np.ndarray  # [M] int32
    class_start: np.ndarray      # [C] first caption row of each class
    class_count: np.ndarray      # [C] captions of each class
    num_classes: int

    @classmethod
    def from_records(cls, records: list[Record], vocab: Vocabulary, max_length: int,
                     class_of_label: dict[int, int] | None = None,
                     record_classes: np.ndarray | None = None,
                     num_classes: int | None = None) -> "TrainingSet":
        """Class = contiguous index of `label` (one per image, or per person for CUHK-PEDES).

        Captions of every image of a class form its pool: CUHK-PEDES pairs an image with a random
        caption of any image of the same person, and for one-image classes this is the image's own.
        `record_classes` ([N] ints in [0, num_classes)) sets each record's class directly instead,
        e.g. k-means pseudo-labels: every image's captions then join its cluster's pool.
        """
        if record_classes is not None:
            image_classes = np.asarray(record_classes).astype(np.int32)
            num_classes = int(num_classes if num_classes is not None else image_classes.max() + 1)
            if image_classes.shape != (len(records),) or not (
                    (image_classes >= 0) & (image_classes < num_classes)).all():
                raise ValueError(f"record_classes must be {len(records)} ids in [0, {num_classes})")
        else:
            if class_of_label is None:
                class_of_label = {lab: i for i, lab in
                                  enumerate(sorted({r.label for r in records}))}
            image_classes = np.array([class_of_label[r.label] for r in records], np.int32)
            num_classes = len(class_of_label)
        captions, caption_classes = [], []
        for r, c in zip(records, image_classes):
            captions.extend(r.captions)
            caption_classes.extend([c] * len(r.captions))
        caption_classes = np.array(caption_classes, np.int32)
        order = np.argsort(caption_classes, kind="stable")
        tokens = encode_captions([captions[i] for i in order], vocab, max_length)
        caption_classes = caption_classes[order]
        count = np.bincount(caption_classes, minlength=num_classes).astype(np.int32)
        start = (np.cumsum(count) - count).astype(np.int32)
        return cls(np.array([r.image_path for r in records]), image_classes, tokens,
                   caption_classes, start, count, num_classes)


def position_shift(tokens: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Left-aligned ids [L] of n words → the same words starting at a random offset in [0, L−n]."""
    length = tf.shape(tokens)[0]
    n = tf.reduce_sum(tf.cast(tokens != PAD_ID, tf.int32))
    offset = tf.random.stateless_uniform([], seed, 0, length - n + 1, dtype=tf.int32)
    return tf.roll(tokens, offset, axis=0)


def position_shift_rows(tokens: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`position_shift` of every row of [K, L] left-aligned ids, each with its own offset."""
    length = tf.shape(tokens)[1]
    n = tf.reduce_sum(tf.cast(tokens != PAD_ID, tf.int32), axis=1)
    offsets = tf.cast(tf.floor(tf.random.stateless_uniform(tf.shape(n), seed) *
                               tf.cast(length - n + 1, tf.float32)), tf.int32)
    source = tf.math.floormod(tf.range(length)[None, :] - offsets[:, None], length)
    return tf.gather(tokens, source, batch_dims=1)


def all_shifts(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every Position-Shift offset of each sentence: (shifted rows, index of their sentence).

    A sentence of n words has L − n + 1 offsets; the test-time text feature sums over them.
    """
    length = tokens.shape[1]
    counts = (tokens != PAD_ID).sum(axis=1)
    rows, owner = [], []
    for i, (row, n) in enumerate(zip(tokens, counts)):
        for offset in range(length - n + 1):
            rows.append(np.roll(row, offset))
            owner.append(i)
    return np.stack(rows).astype(np.int32), np.array(owner, np.int64)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/BMP/GIF bytes → float32 RGB [H, W, 3] in [0, 255] (first frame of a GIF)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return tf.cast(image, tf.float32)


def resize(image: tf.Tensor, size, method: str = RESIZE) -> tf.Tensor:
    """The one image resize of training crops, caches, test images and the served graphs, so
    they all see the same pixels. "bicubic_antialias": the authors' (MATLAB imresize in their
    prepare scripts, vl_imreadjpeg's 'bicubic': Keys' cubic, widened when shrinking), clipped
    to [0, 255] because bicubic overshoots; "bilinear": tf.image.resize's default, no
    antialiasing (runs before config_version 4)."""
    if method == "bilinear":
        return tf.image.resize(image, size)
    if method == "bicubic_antialias":
        out = tf.image.resize(image, size, method="bicubic", antialias=True)
        return tf.clip_by_value(out, 0.0, 255.0)
    raise ValueError(f"resize method must be one of {', '.join(map(repr, RESIZE_METHODS))}, "
                     f"got {method!r}")


def crop_size(shape: tf.Tensor, seeds: tf.Tensor, scale=(0.8, 1.0), aspect=(3 / 4, 4 / 3),
              rule: str = CROP_RULE) -> tf.Tensor:
    """(height, width) float32 of a random crop of an image of `shape` (h, w): the largest crop
    of a random aspect in `aspect` (log-uniform, from seeds[0]), scaled down (from seeds[1]).
    "area": its area fraction uniform in [scale[0]², scale[1]²], sides rounded, as the authors'
    vl_imreadjpeg ('CropSize', [0.8, 1]); "side": its side fraction uniform in `scale`,
    floored (runs before config_version 4, whose random draws this keeps)."""
    if rule not in CROP_RULES:
        raise ValueError(f"crop rule must be one of {', '.join(map(repr, CROP_RULES))}, got "
                         f"{rule!r}")
    h, w = shape[0], shape[1]
    log_ratio = tf.random.stateless_uniform([], seeds[0], math.log(aspect[0]), math.log(aspect[1]))
    ratio = tf.exp(log_ratio)  # width / height of the crop
    crop_h = tf.minimum(h, w / ratio)
    crop_w = crop_h * ratio
    if rule == "side":
        s = tf.random.stateless_uniform([], seeds[1], scale[0], scale[1])
        crop_h, crop_w = tf.floor(crop_h * s), tf.floor(crop_w * s)
    else:
        area = tf.random.stateless_uniform([], seeds[1], scale[0] ** 2, scale[1] ** 2)
        s = tf.sqrt(area)
        # C's round (halves away from zero; tf.round rounds them to even), within the image
        crop_h = tf.minimum(tf.floor(crop_h * s + 0.5), h)
        crop_w = tf.minimum(tf.floor(crop_w * s + 0.5), w)
    return tf.maximum(tf.stack([crop_h, crop_w]), 1.0)


def random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor,
                        scale=(0.8, 1.0), aspect=(3 / 4, 4 / 3), rule: str = CROP_RULE,
                        resize_method: str = RESIZE) -> tf.Tensor:
    """A random crop (`crop_size`: 80–100 % of the largest crop of a random aspect in
    [3/4, 4/3]) at a random place, resized to size² (docs/method.md)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    h, w = shape[0], shape[1]
    crop_h, crop_w = tf.unstack(crop_size(shape, seeds[:2], scale, aspect, rule))
    top = tf.floor(tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (h - crop_h + 1))
    left = tf.floor(tf.random.stateless_uniform([], seeds[3], 0.0, 1.0) * (w - crop_w + 1))
    crop = tf.image.crop_to_bounding_box(image, tf.cast(top, tf.int32), tf.cast(left, tf.int32),
                                         tf.cast(crop_h, tf.int32), tf.cast(crop_w, tf.int32))
    return resize(crop, [size, size], resize_method)


def squash(image: tf.Tensor, side: int, resize_method: str = RESIZE) -> tf.Tensor:
    """[H, W, 3] → side × side, aspect not kept; side 0: unchanged. The authors' CUHK-PEDES
    geometry (dataset/CUHK-PEDES-prepare/resize_image.m squashes every photo to 256 × 256 once;
    their training crops and test images both come from that square)."""
    return resize(image, [side, side], resize_method) if side else image


def augment(image: tf.Tensor, size: int, seed: tf.Tensor, flip: bool, scale,
            square: int = 0, crop_rule: str = CROP_RULE,
            resize_method: str = RESIZE) -> tf.Tensor:
    """A training view: a random crop of the image (of its `square` × `square` squash, where
    set) resized to size², randomly mirrored."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = random_resized_crop(squash(image, square, resize_method), size, crop_seed, scale,
                                rule=crop_rule, resize_method=resize_method)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image


def load_eval_image(path: tf.Tensor, size: int,
                    resize_method: str = RESIZE) -> tf.Tensor:
    """Whole image resized to size × size (no crop): the squash test geometry."""
    return resize(decode_image(tf.io.read_file(path)), [size, size], resize_method)


def eval_pixels(image: tf.Tensor, geometry: str, image_size: int, short_side: int,
                square: int = 0, resize_method: str = RESIZE) -> tf.Tensor:
    """A decoded test image [H, W, 3] as the test geometry feeds it (one function for
    evaluation and the served encoders): squashed to `square`² first where set, then
    keep_aspect's short side `short_side` (its windows are summed later) or squash's
    image_size²."""
    image = squash(image, square, resize_method)
    if geometry == "keep_aspect":
        return resize_short_side(image, short_side, resize_method)
    return resize(image, [image_size, image_size], resize_method)


def resize_short_side(image: tf.Tensor, side: int,
                      resize_method: str = RESIZE) -> tf.Tensor:
    """[H, W, 3] → the whole image with its short side `side`, aspect kept (docs/method.md's test
    images; the authors' resize_image.m). The long side is rounded to the nearest pixel."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(side, tf.float32) / tf.reduce_min(shape)
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), side)
    return resize(image, size, resize_method)


def train_dataset(data: TrainingSet, batch_size: int, seed: int, *, image_size: int = 224,
                  features: np.ndarray | None = None, flip: bool = True, crop_scale=(0.8, 1.0),
                  shift: bool = True, pool_size: int = 0, random_negatives: bool = False,
                  shards: str | None = None, maps: np.ndarray | None = None,
                  epochs: int = 1, first_epoch: int = 0, square: int = 0,
                  crop_rule: str = CROP_RULE,
                  resize_method: str = RESIZE) -> tf.data.Dataset:
    """Epochs `first_epoch` … `epochs`−1, one after another: in each, every training image once,
    shuffled, paired with a random caption of its class.

    Every random choice of epoch e (order, caption, view, crop, flip, shift, pool) derives from
    (`seed`, e) alone, never from how many epochs an iterator went through before: so a stage
    resumed at epoch e (`first_epoch=e`) sees exactly the batches the uninterrupted run saw.
    Iterate it with `steps_per_epoch` = len(images) // batch_size (one iterator for all epochs).

    With `features` [N, K, D] (Stage I cache) the image input is one random cached view instead
    of pixels; with `maps` [N, K, h, w, c] (the prefix cache, float16, memory-mapped: read row
    by row, never copied into the graph) it is one random view's maps, as float32. With `shards`
    (a `keras_instance.cli.prepare` folder) image bytes stream from its TFRecord shards instead
    of one file per image; captions stay in memory as token ids. With `square`, crops come
    from each image squashed to square² (`squash`), cut by `crop_rule` and resized by
    `resize_method` (`augment`). With `pool_size`, each batch also carries about that many
    random training captions for the paper's hardest-of-pool negatives, spread over its
    examples (so they split evenly over replicas and are gathered back), shifted like the
    training captions (the authors shift them too). With
    `random_negatives`, each example also carries a caption drawn uniformly from the other
    classes' captions (`neg_tokens`, `neg_labels`: the authors' CUHK-PEDES negatives, their
    rand_diff_class2.m; a person with more captions is drawn more often). Ends with
    ({inputs}, class) batches, remainder dropped.
    """
    n = len(data.image_classes)
    if n < batch_size:
        raise ValueError(f"batch size {batch_size} is larger than the {n} training images")
    classes = tf.constant(data.image_classes)
    start, count = tf.constant(data.class_start), tf.constant(data.class_count)
    tokens_table = tf.constant(data.caption_tokens)
    paths = tf.constant(data.image_paths)
    feats = tf.constant(features) if features is not None else None
    caption_classes = tf.constant(data.caption_classes)
    pool_per_example = -(-pool_size // batch_size) if pool_size else 0

    num_captions = len(data.caption_classes)

    def caption_of(c, seed_pick, seed_shift):
        pick = tf.random.stateless_uniform([], seed_pick, 0, count[c], dtype=tf.int32)
        tokens = tokens_table[start[c] + pick]
        return position_shift(tokens, seed_shift) if shift else tokens

    def example(index, rng, image_bytes=None):
        seeds = tf.random.experimental.stateless_split(tf.cast(rng, tf.int64), 7)
        c = classes[index]
        tokens = caption_of(c, seeds[0], seeds[1])
        if feats is not None:
            views = tf.shape(feats)[1]
            view = tf.random.stateless_uniform([], seeds[2], 0, views, dtype=tf.int32)
            inputs = {"image_features": feats[tf.cast(index, tf.int32), view], "tokens": tokens}
        elif maps is not None:
            view = tf.random.stateless_uniform([], seeds[2], 0, maps.shape[1], dtype=tf.int32)
            cached = tf.numpy_function(lambda i, v: np.asarray(maps[i, v], np.float32),
                                       [tf.cast(index, tf.int64), view], tf.float32)
            inputs = {"image_maps": tf.ensure_shape(cached, maps.shape[2:]), "tokens": tokens}
        else:
            if image_bytes is None:
                image_bytes = tf.io.read_file(paths[index])
            image = decode_image(image_bytes)
            inputs = {"image": augment(image, image_size, seeds[2], flip, crop_scale, square,
                                       crop_rule, resize_method),
                      "tokens": tokens}
        if pool_per_example:
            rows = tf.random.stateless_uniform([pool_per_example], seeds[3], 0,
                                               tf.shape(caption_classes)[0], dtype=tf.int32)
            pool = tf.gather(tokens_table, rows)
            inputs["pool_tokens"] = position_shift_rows(pool, seeds[4]) if shift else pool
            inputs["pool_labels"] = tf.gather(caption_classes, rows)
        if random_negatives:  # uniform over the other classes' captions (rand_diff_class2.m)
            row = tf.random.stateless_uniform([], seeds[5], 0, num_captions - count[c],
                                              dtype=tf.int32)
            row = tf.where(row >= start[c], row + count[c], row)  # skip c's own rows
            neg = tokens_table[row]
            inputs["neg_tokens"] = position_shift(neg, seeds[6]) if shift else neg
            inputs["neg_labels"] = caption_classes[row]
        return inputs, c

    if not 0 <= first_epoch < epochs:
        raise ValueError(f"first_epoch {first_epoch} is not one of the {epochs} epochs")
    streamed = bool(shards) and feats is None and maps is None
    if streamed:
        image_stream(shards, "train", n, seed)  # checks the shards before training starts

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        rngs = tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_split(epoch_seed, n))
        if streamed:  # the shards' own seeded order, reshuffled per epoch from (seed, e)
            stream = image_stream(shards, "train", n, seed * 100_003 + epoch)
            ds = tf.data.Dataset.zip(stream, rngs).map(
                lambda pair, rng: example(pair[0], rng, pair[1]), num_parallel_calls=AUTOTUNE,
                deterministic=True)
        else:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), tf.stack([epoch_seed[1], epoch_seed[0]]))
            ds = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(order), rngs).map(
                example, num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.batch(batch_size, drop_remainder=True)

    epochs_ds = tf.data.Dataset.range(first_epoch, epochs)
    return epochs_ds.flat_map(one_epoch).prefetch(AUTOTUNE)

