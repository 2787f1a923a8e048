"""tf.data input: Position Shift, crops, image decoding, TrainingSet and training batches."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_instance.data.pipeline import (
    TrainingSet,
    all_shifts,
    decode_image,
    position_shift,
    random_resized_crop,
    train_dataset,
)
from keras_instance.data.records import Record
from keras_instance.text.tokenizer import Vocabulary, tokenize_py

# ----------------------------------------------------------------------------- Position Shift

def shifted_offsets(tokens, seeds):
    tokens = np.asarray(tokens, np.int32)
    words = tokens[tokens != 0]
    fn = tf.function(lambda s: position_shift(tf.constant(tokens), s))
    offsets = []
    for s in seeds:
        out = fn(tf.constant([s, 7], tf.int64)).numpy()
        assert out.shape == tokens.shape and out.dtype == np.int32
        nz = np.flatnonzero(out)
        # The same words, in the same order, contiguous, zeros everywhere else.
        np.testing.assert_array_equal(out[nz], words)
        assert len(nz) == 0 or nz[-1] - nz[0] + 1 == len(words)
        assert (out != 0).sum() == len(words)
        offsets.append(int(nz[0]) if len(nz) else 0)
    return offsets


def test_position_shift_covers_exactly_all_offsets():
    tokens = [5, 9, 3, 0, 0, 0, 0, 0]  # n = 3, L = 8 → offsets 0..5
    offsets = shifted_offsets(tokens, range(300))
    assert min(offsets) == 0 and max(offsets) == 5
    assert set(offsets) == set(range(6))


def test_position_shift_single_word():
    offsets = shifted_offsets([4, 0, 0, 0, 0], range(150))
    assert set(offsets) == set(range(5))


def test_position_shift_full_sentence_unchanged():
    tokens = np.array([3, 1, 4, 1, 5, 9], np.int32)
    for s in range(20):
        out = position_shift(tf.constant(tokens), tf.constant([s, s + 1], tf.int64)).numpy()
        np.testing.assert_array_equal(out, tokens)


def test_position_shift_is_deterministic_per_seed():
    tokens = tf.constant([7, 8, 0, 0, 0, 0, 0, 0, 0, 0], tf.int32)
    seed = tf.constant([3, 4], tf.int64)
    a = position_shift(tokens, seed).numpy()
    b = position_shift(tokens, seed).numpy()
    np.testing.assert_array_equal(a, b)


def test_all_shifts_rows_and_owners():
    tokens = np.array([[1, 2, 0, 0],
                       [3, 4, 5, 6],
                       [7, 0, 0, 0]], np.int32)
    rows, owner = all_shifts(tokens)
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(owner, [0, 0, 0, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(rows, [
        [1, 2, 0, 0], [0, 1, 2, 0], [0, 0, 1, 2],
        [3, 4, 5, 6],
        [7, 0, 0, 0], [0, 7, 0, 0], [0, 0, 7, 0], [0, 0, 0, 7],
    ])


def test_all_shifts_count_per_sentence():
    rng = np.random.default_rng(0)
    length = 9
    n_words = rng.integers(1, length + 1, size=12)
    tokens = np.zeros((12, length), np.int32)
    for i, n in enumerate(n_words):
        tokens[i, :n] = rng.integers(1, 50, size=n)
    rows, owner = all_shifts(tokens)
    np.testing.assert_array_equal(np.bincount(owner, minlength=12), length - n_words + 1)
    for r, o in zip(rows, owner):
        nz = np.flatnonzero(r)
        np.testing.assert_array_equal(r[nz], tokens[o][:n_words[o]])
        assert nz[-1] - nz[0] + 1 == n_words[o]


# ----------------------------------------------------------------------------- images

def coordinate_image(h, w):
    """Channel 0 = row index, channel 1 = column index, channel 2 = 100."""
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                             indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 100.0)], axis=-1)


@pytest.mark.parametrize("h, w", [(100, 100), (60, 120), (120, 50)])
def test_random_resized_crop_stays_inside_and_has_right_size(h, w):
    image = tf.constant(coordinate_image(h, w))
    size = 32
    crop = tf.function(lambda s: random_resized_crop(image, size, s))
    tops, lefts = [], []
    for s in range(40):
        out = crop(tf.constant([s, 11], tf.int64)).numpy()
        assert out.shape == (size, size, 3) and out.dtype == np.float32
        r, c = out[..., 0], out[..., 1]
        assert r.min() >= -1e-3 and r.max() <= h - 1 + 1e-3
        assert c.min() >= -1e-3 and c.max() <= w - 1 + 1e-3
        np.testing.assert_allclose(out[..., 2], 100.0, atol=1e-3)
        # A resize only interpolates: rows vary along axis 0 only, columns along axis 1 only.
        np.testing.assert_allclose(r, np.repeat(r[:, :1], size, axis=1), atol=1e-3)
        # Estimated crop size (half-pixel resize: span = side·(1 − 1/size) − ~0..1).
        crop_h = (r.max() - r.min()) * size / (size - 1)
        crop_w = (c.max() - c.min()) * size / (size - 1)
        aspect = crop_w / crop_h
        assert 3 / 4 - 0.05 <= aspect <= 4 / 3 + 0.05, aspect
        # The largest crop of that aspect, scaled by 0.8–1.0.
        largest_h = min(h, w / aspect)
        assert 0.8 * largest_h - 2.5 <= crop_h <= largest_h + 1e-3, (crop_h, largest_h)
        tops.append(r.min())
        lefts.append(c.min())
    # The crop position is random, not always the corner.
    assert np.ptp(tops) > 1 or np.ptp(lefts) > 1


def test_random_resized_crop_deterministic():
    image = tf.constant(coordinate_image(50, 70))
    a = random_resized_crop(image, 16, tf.constant([1, 2], tf.int64)).numpy()
    b = random_resized_crop(image, 16, tf.constant([1, 2], tf.int64)).numpy()
    c = random_resized_crop(image, 16, tf.constant([2, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def encoded(array, fmt, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_png_exact():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = decode_image(tf.constant(encoded(pixels, "PNG"))).numpy()
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, pixels.astype(np.float32))


def test_decode_jpeg_close():
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 1] = 40
    pixels[..., 2] = 90
    out = decode_image(tf.constant(encoded(pixels, "JPEG"))).numpy()
    assert out.dtype == np.float32 and out.shape == (16, 16, 3)
    np.testing.assert_allclose(out, pixels.astype(np.float32), atol=6)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_grayscale_gives_three_equal_channels(fmt):
    gray = np.tile(np.arange(0, 240, 15, dtype=np.uint8), (4, 1))  # 4 × 16
    out = decode_image(tf.constant(encoded(gray, fmt, mode="L"))).numpy()
    assert out.shape == (4, 16, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], gray, atol=0 if fmt == "PNG" else 8)


# ----------------------------------------------------------------------------- TrainingSet

WORDS = ["red", "green", "blue", "dog", "cat", "bird", "big", "small", "runs", "sits", "on",
         "grass", "snow", "a", "the"]


def write_png(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return str(path)


def make_records(tmp_path, labels, captions_per_image=2, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for i, label in enumerate(labels):
        caps = tuple(" ".join(rng.choice(WORDS, size=rng.integers(2, 6)))
                     for _ in range(captions_per_image))
        records.append(Record(f"img{i}", write_png(tmp_path / f"img{i}.png", i), caps, label,
                              "train"))
    return records


def vocab_for(records):
    return Vocabulary.build(tokenize_py([c for r in records for c in r.captions]))


def test_from_records_one_class_per_image(tmp_path):
    records = make_records(tmp_path, labels=[30, 10, 20], captions_per_image=2)
    vocab = vocab_for(records)
    data = TrainingSet.from_records(records, vocab, max_length=6)
    assert data.num_classes == 3
    np.testing.assert_array_equal(data.image_classes, [2, 0, 1])  # sorted labels → 0..C−1
    assert data.image_classes.dtype == np.int32
    assert list(data.image_paths) == [r.image_path for r in records]
    np.testing.assert_array_equal(data.caption_classes, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.class_start, [0, 2, 4])
    np.testing.assert_array_equal(data.class_count, [2, 2, 2])
    assert data.caption_tokens.shape == (6, 6) and data.caption_tokens.dtype == np.int32
    # Class 0 is label 10 = records[1]: its captions, in order.
    for c, rec in [(0, records[1]), (1, records[2]), (2, records[0])]:
        for k, caption in enumerate(rec.captions):
            ids = [vocab.index[w] for w in tokenize_py([caption])[0]][:6]
            row = data.caption_tokens[data.class_start[c] + k]
            np.testing.assert_array_equal(row, ids + [0] * (6 - len(ids)))


def test_from_records_cuhk_like_shared_label(tmp_path):
    # Images 0 and 2 show the same person (label 5): their captions form one pool.
    records = make_records(tmp_path, labels=[5, 8, 5, 9], captions_per_image=2)
    records[3] = Record("img3", records[3].image_path, ("the cat", "a dog", "big snow"), 9,
                        "train")
    data = TrainingSet.from_records(records, vocab_for(records), max_length=8)
    assert data.num_classes == 3
    np.testing.assert_array_equal(data.image_classes, [0, 1, 0, 2])
    np.testing.assert_array_equal(data.class_count, [4, 2, 3])
    np.testing.assert_array_equal(data.class_start, [0, 4, 6])
    np.testing.assert_array_equal(data.caption_classes, [0, 0, 0, 0, 1, 1, 2, 2, 2])
    expected_pool = encode_rows(list(records[0].captions) + list(records[2].captions),
                                vocab_for(records), 8)
    np.testing.assert_array_equal(data.caption_tokens[:4], expected_pool)


def test_from_records_explicit_class_map(tmp_path):
    records = make_records(tmp_path, labels=[1, 2], captions_per_image=1)
    data = TrainingSet.from_records(records, vocab_for(records), 4, class_of_label={1: 3, 2: 0,
                                                                                    7: 1, 8: 2})
    assert data.num_classes == 4
    np.testing.assert_array_equal(data.image_classes, [3, 0])
    np.testing.assert_array_equal(data.class_count, [1, 0, 0, 1])
    np.testing.assert_array_equal(data.class_start, [0, 1, 1, 1])


def encode_rows(captions, vocab, length):
    rows = []
    for words in tokenize_py(captions):
        ids = [vocab.index[w] for w in words if w in vocab.index][:length]
        rows.append(ids + [0] * (length - len(ids)))
    return np.array(rows, np.int32)


# ----------------------------------------------------------------------------- train_dataset

@pytest.fixture
def cuhk_like(tmp_path):
    labels = [0, 1, 2, 2, 3, 4, 5, 5, 6, 7]  # 10 images, 8 classes
    records = make_records(tmp_path, labels, captions_per_image=3, seed=1)
    return TrainingSet.from_records(records, vocab_for(records), max_length=10)


def unshift(row):
    nz = row[row != 0]
    return tuple(nz)


def pool_of(data, c):
    s, n = data.class_start[c], data.class_count[c]
    return {unshift(r) for r in data.caption_tokens[s:s + n]}


def collect(ds):
    return [(({k: v.numpy() for k, v in x.items()}), y.numpy()) for x, y in ds]


def test_train_dataset_batches(cuhk_like):
    data = cuhk_like
    ds = train_dataset(data, batch_size=4, seed=3, image_size=16)
    batches = collect(ds)
    assert len(batches) == 10 // 4
    for x, y in batches:
        assert set(x) == {"image", "tokens"}
        assert x["image"].shape == (4, 16, 16, 3) and x["image"].dtype == np.float32
        assert 0.0 <= x["image"].min() and x["image"].max() <= 255.0
        assert x["tokens"].shape == (4, 10) and x["tokens"].dtype == np.int32
        assert y.shape == (4,) and y.dtype == np.int32
        assert y.min() >= 0 and y.max() < data.num_classes
        for tokens, c in zip(x["tokens"], y):
            assert unshift(tokens) in pool_of(data, c)
            nz = np.flatnonzero(tokens)
            assert nz[-1] - nz[0] + 1 == len(nz)  # shifted, still contiguous


def test_train_dataset_images_are_shuffled_once_per_epoch(cuhk_like):
    ds = train_dataset(cuhk_like, batch_size=2, seed=0, image_size=8)
    labels = np.concatenate([y for _, y in collect(ds)])
    # Every image exactly once: class histogram equals that of the images.
    np.testing.assert_array_equal(np.bincount(labels, minlength=8),
                                  np.bincount(cuhk_like.image_classes, minlength=8))


def test_train_dataset_deterministic_for_seed(cuhk_like):
    a = collect(train_dataset(cuhk_like, batch_size=5, seed=7, image_size=8))
    b = collect(train_dataset(cuhk_like, batch_size=5, seed=7, image_size=8))
    c = collect(train_dataset(cuhk_like, batch_size=5, seed=8, image_size=8))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k])
    assert any(not np.array_equal(xa["image"], xc["image"]) or not np.array_equal(ya, yc)
               for (xa, ya), (xc, yc) in zip(a, c))


def test_a_resumed_epoch_draws_what_the_uninterrupted_run_drew(cuhk_like):
    """Epoch e depends on (seed, e) only: resumed at epoch 3 the batches are epoch 3's, and the
    epochs differ from each other (order, caption, crop, shift)."""
    steps = 10 // 5
    whole = collect(train_dataset(cuhk_like, batch_size=5, seed=7, image_size=8, epochs=3))
    assert len(whole) == 3 * steps
    resumed = collect(train_dataset(cuhk_like, batch_size=5, seed=7, image_size=8, epochs=3,
                                    first_epoch=2))
    assert len(resumed) == steps
    for (xa, ya), (xb, yb) in zip(whole[2 * steps:], resumed, strict=True):
        np.testing.assert_array_equal(ya, yb)
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k])
    first, last = whole[:steps], whole[2 * steps:]
    assert any(not np.array_equal(a[0]["image"], b[0]["image"]) for a, b in zip(first, last))


def test_train_dataset_no_shift_keeps_left_aligned(cuhk_like):
    ds = train_dataset(cuhk_like, batch_size=5, seed=1, image_size=8, shift=False, flip=False)
    for x, y in collect(ds):
        for tokens, c in zip(x["tokens"], y):
            rows = cuhk_like.caption_tokens[cuhk_like.caption_classes == c]
            assert any(np.array_equal(tokens, r) for r in rows)


def test_train_dataset_from_features(cuhk_like):
    data = cuhk_like
    n, views, dim = len(data.image_classes), 3, 6
    feats = (np.arange(n * views * dim, dtype=np.float32).reshape(n, views, dim))
    ds = train_dataset(data, batch_size=5, seed=2, features=feats)
    batches = collect(ds)
    assert len(batches) == 2
    seen = set()
    for x, y in batches:
        assert set(x) == {"image_features", "tokens"}
        assert x["image_features"].shape == (5, dim) and x["image_features"].dtype == np.float32
        for f, c in zip(x["image_features"], y):
            # The feature is one cached view of an image of class c.
            idx, view = divmod(int(f[0]) // dim, views)
            np.testing.assert_array_equal(f, feats[idx, view])
            assert data.image_classes[idx] == c
            seen.add(idx)
    assert seen == set(range(n))


def _a_shift_of(tokens, rows):
    """Is `tokens` one of `rows` moved right by some Position-Shift offset?"""
    return any(np.array_equal(tokens, np.roll(r, k)) for r in rows
               for k in range(len(r) - int((r != 0).sum()) + 1))


def test_train_dataset_pool(cuhk_like):
    """Pool captions of the right class, Position-Shifted as the authors shift them."""
    data = cuhk_like
    ds = train_dataset(data, batch_size=4, seed=5, image_size=8, pool_size=7)  # 2 per example
    moved = 0
    for x, y in collect(ds):
        assert set(x) == {"image", "tokens", "pool_tokens", "pool_labels"}
        assert x["pool_tokens"].shape == (4, 2, 10) and x["pool_tokens"].dtype == np.int32
        assert x["pool_labels"].shape == (4, 2)
        for toks, labs in zip(x["pool_tokens"], x["pool_labels"]):
            for t, lab in zip(toks, labs):
                assert 0 <= lab < data.num_classes
                rows = data.caption_tokens[data.caption_classes == lab]
                assert _a_shift_of(t, rows)
                moved += int(t[0] == 0)
    assert moved >= 3  # shifted, not left-aligned (without shifting, never)


def test_train_dataset_random_negatives(cuhk_like):
    """--negatives=random: each example carries a caption of a random OTHER class."""
    data = cuhk_like
    ds = train_dataset(data, batch_size=4, seed=2, image_size=8, random_negatives=True)
    for x, y in collect(ds):
        assert x["neg_tokens"].shape == (4, 10) and x["neg_labels"].shape == (4,)
        for t, lab, own in zip(x["neg_tokens"], x["neg_labels"], y):
            assert lab != own and 0 <= lab < data.num_classes
            assert _a_shift_of(t, data.caption_tokens[data.caption_classes == lab])


def test_train_dataset_batch_larger_than_data(cuhk_like):
    with pytest.raises(ValueError, match="batch size"):
        train_dataset(cuhk_like, batch_size=11, seed=0)


def test_random_negative_captions_are_uniform_over_other_peoples_captions(cuhk_like):
    """rand_diff_class2.m draws the negative caption uniformly from every caption of another
    person: persons 2 and 5 (two images, 6 captions each, against 3) come up 12/27 = 44 % of
    the time for a query of another person; uniform over persons (before issue 23) gave 2/7."""
    data = cuhk_like
    features = np.zeros((len(data.image_classes), 1, 4), np.float32)
    ds = train_dataset(data, batch_size=5, seed=3, features=features, random_negatives=True,
                       epochs=300)
    hits = total = 0
    for x, y in ds:
        for lab, own in zip(x["neg_labels"].numpy(), y.numpy()):
            if own not in (2, 5):
                total += 1
                hits += int(lab in (2, 5))
    assert total > 1500
    assert abs(hits / total - 12 / 27) < 0.04, hits / total
