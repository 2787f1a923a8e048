"""Instance loss and the bidirectional ranking loss against plain NumPy references."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_instance.losses import instance_loss, ranking_loss


def np_softmax_ce(labels, logits):
    logits = np.asarray(logits, np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


def l2n(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_ranking_hardest_in_batch(img, txt, labels, margin):
    """Straight loops: for each i, hardest other-label caption and other-label image."""
    img, txt = l2n(img), l2n(txt)
    n = len(labels)
    out = np.zeros(n)
    for i in range(n):
        pos = img[i] @ txt[i]
        neg_cap = max((img[i] @ txt[j] for j in range(n) if labels[j] != labels[i]),
                      default=None)
        neg_img = max((txt[i] @ img[j] for j in range(n) if labels[j] != labels[i]),
                      default=None)
        loss = 0.0
        if neg_cap is not None:
            loss += max(0.0, margin - pos + neg_cap)
        if neg_img is not None:
            loss += max(0.0, margin - pos + neg_img)
        out[i] = loss
    return out


def np_caption_side_of_pool(img, txt, labels, pool, pool_labels, margin):
    img, txt, pool = l2n(img), l2n(txt), l2n(pool)
    out = np.zeros(len(labels))
    for i in range(len(labels)):
        pos = img[i] @ txt[i]
        sims = [img[i] @ pool[j] for j in range(len(pool)) if pool_labels[j] != labels[i]]
        out[i] = max(0.0, margin - pos + max(sims)) if sims else 0.0
    return out


# ----------------------------------------------------------------------------- instance loss

def test_instance_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9)).astype(np.float32) * 3
    labels = np.array([0, 8, 3, 3, 5, 1])
    got = instance_loss(tf.constant(labels, tf.int64), tf.constant(logits)).numpy()
    assert got.shape == (6,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np_softmax_ce(labels, logits), rtol=1e-5, atol=1e-6)


def test_instance_loss_hand_value_and_float16_input():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], np.float16)
    got = instance_loss(tf.constant([1, 0]), tf.constant(logits)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [np.log(2.0), -np.log(0.75)], rtol=1e-3)


# ----------------------------------------------------------------------------- hardest_in_batch

@pytest.mark.parametrize("labels", [
    [0, 1, 2, 3, 4, 5],
    [0, 1, 0, 2, 1, 3],      # duplicate labels: same-label items are not negatives
    [4, 4, 4, 9, 9, 2],
])
@pytest.mark.parametrize("margin", [1.0, 0.2])
def test_hardest_in_batch_matches_numpy(labels, margin):
    rng = np.random.default_rng(len(set(labels)) + int(margin * 10))
    img = rng.normal(size=(6, 5)).astype(np.float32) * rng.uniform(0.5, 3, size=(6, 1))
    txt = (img + rng.normal(size=(6, 5)) * 0.8).astype(np.float32)
    got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant(labels),
                       margin=margin, negatives="hardest_in_batch").numpy()
    assert got.shape == (6,)
    np.testing.assert_allclose(got, np_ranking_hardest_in_batch(img, txt, labels, margin),
                               rtol=1e-5, atol=1e-5)


def test_hardest_in_batch_hand_example():
    # 2-d unit vectors: easy to compute by hand.
    img = np.array([[1, 0], [0, 1], [1, 1]], np.float32)            # i2 normalises to (.707,.707)
    txt = np.array([[2, 0], [0, 3], [1, 0]], np.float32)
    labels = [0, 1, 1]
    s = 1 / np.sqrt(2)
    # i0: pos 1; negatives (label 1): captions t1 (0), t2 (1) → 1; images i1 (0), i2 (s) → s.
    # i1: pos 1; negatives (label 0): caption t0 → 0; image i0 vs t1 → 0.
    # i2: pos s; negatives: caption t0 → s; image i0 vs t2 → 1.
    expected = [max(0, 1 - 1 + 1) + max(0, 1 - 1 + s),
                max(0, 1 - 1 + 0) + max(0, 1 - 1 + 0),
                max(0, 1 - s + s) + max(0, 1 - s + 1)]
    got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant(labels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_all_same_label_gives_zero_loss():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(4, 3)).astype(np.float32)
    txt = rng.normal(size=(4, 3)).astype(np.float32)
    for mode, extra in [("hardest_in_batch", {}),
                        ("hardest_of_pool", {"pool_features": tf.constant(txt),
                                             "pool_labels": tf.constant([7, 7, 7, 7])})]:
        got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant([7, 7, 7, 7]),
                           margin=1.0, negatives=mode, **extra).numpy()
        np.testing.assert_array_equal(got, np.zeros(4, np.float32))


def test_ranking_loss_gradient_is_finite():
    img = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32))
    txt = tf.constant(np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ranking_loss(img, txt, tf.constant([0, 1, 2, 3])))
    g = tape.gradient(loss, img).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)


# ----------------------------------------------------------------------------- hardest_of_pool

def test_hardest_of_pool_caption_side_matches_numpy():
    """With a batch of all-distinct labels whose other images are all equally similar to each
    caption, the random image negative is fixed, so the whole loss is known exactly."""
    rng = np.random.default_rng(5)
    b, d = 4, 8
    # Images: orthonormal basis vectors e0..e3; captions: a·e_i + c·u, where u is orthogonal to
    # all images, so every caption has the same similarity to each OTHER image (zero).
    img = np.eye(b, d, dtype=np.float32) * rng.uniform(1, 3, size=(b, 1)).astype(np.float32)
    u = np.zeros(d, np.float32)
    u[b:] = rng.normal(size=d - b)
    txt = (np.eye(b, d) * np.array([[2.0], [1.0], [0.5], [3.0]]) + u).astype(np.float32)
    labels = np.array([10, 11, 12, 13])
    pool = rng.normal(size=(9, d)).astype(np.float32)
    pool_labels = np.array([10, 11, 12, 13, 10, 10, 20, 21, 11])
    pool[0] = img[0] * 5  # a same-label pool caption identical in direction: must be ignored

    got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant(labels), margin=1.0,
                       negatives="hardest_of_pool", pool_features=tf.constant(pool),
                       pool_labels=tf.constant(pool_labels), seed=1).numpy()
    pos = np.sum(l2n(img) * l2n(txt), axis=1)
    image_side = np.maximum(0.0, 1.0 - pos + 0.0)
    expected = np_caption_side_of_pool(img, txt, labels, pool, pool_labels, 1.0) + image_side
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_hardest_of_pool_image_side_is_a_valid_random_negative():
    rng = np.random.default_rng(11)
    b, d = 6, 5
    img = rng.normal(size=(b, d)).astype(np.float32)
    txt = rng.normal(size=(b, d)).astype(np.float32)
    labels = np.array([0, 0, 1, 2, 2, 3])
    # Every label has other-label pool captions, so the caption side is never masked.
    pool = rng.normal(size=(8, d)).astype(np.float32)
    pool_labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    margin = 3.0  # large margin: the hinge is never clipped, so the loss reveals the similarity
    caption_side = np_caption_side_of_pool(img, txt, labels, pool, pool_labels, margin)
    pos = np.sum(l2n(img) * l2n(txt), axis=1)
    sim = l2n(txt) @ l2n(img).T                 # caption i vs image j
    seen = [set() for _ in range(b)]
    for seed in range(40):
        got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant(labels),
                           margin=margin, negatives="hardest_of_pool",
                           pool_features=tf.constant(pool), pool_labels=tf.constant(pool_labels),
                           seed=seed).numpy()
        neg_image = got - caption_side - (margin - pos)
        for i in range(b):
            valid = [j for j in range(b) if labels[j] != labels[i]]
            dist = np.abs(sim[i, valid] - neg_image[i])
            assert dist.min() < 1e-4, (i, neg_image[i], sim[i, valid])
            seen[i].add(valid[int(dist.argmin())])
    # Random, not hardest: over 40 draws, several different negatives get picked.
    assert all(len(s) >= 2 for s in seen), seen


def test_hardest_of_pool_requires_pool():
    x = tf.ones((2, 3))
    with pytest.raises(ValueError, match="pool"):
        ranking_loss(x, x, tf.constant([0, 1]), negatives="hardest_of_pool")
    with pytest.raises(ValueError, match="pool"):
        ranking_loss(x, x, tf.constant([0, 1]), negatives="hardest_of_pool",
                     pool_features=x)


def test_unknown_negative_mode():
    x = tf.ones((2, 3))
    with pytest.raises(ValueError, match="negatives"):
        ranking_loss(x, x, tf.constant([0, 1]), negatives="semi_hard")
