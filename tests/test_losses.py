"""Instance loss and the bidirectional ranking loss against plain NumPy references."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_instance.model.losses import (
    half_batch_ranking_loss,
    hardest_of_pool,
    instance_loss,
    interleave,
    ranking_loss,
)


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
                       margin=margin).numpy()
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
    got = ranking_loss(tf.constant(img), tf.constant(txt), tf.constant([7, 7, 7, 7]),
                       margin=1.0).numpy()
    np.testing.assert_array_equal(got, np.zeros(4, np.float32))


def test_ranking_loss_gradient_is_finite():
    img = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32))
    txt = tf.constant(np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ranking_loss(img, txt, tf.constant([0, 1, 2, 3])))
    g = tape.gradient(loss, img).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)


# --------------------------------------------------------------------- the authors' RankLoss

def np_rank_loss(X, Y, margin):
    """RankLoss.m forward, transcribed: columns 1..half are positives, half+1..end negatives."""
    X, Y = l2n(X).T, l2n(Y).T                       # [d, batch], as their dataX / dataY
    half = X.shape[1] // 2
    Xp, Xn, Yp, Yn = X[:, :half], X[:, half:], Y[:, :half], Y[:, half:]
    positive = np.diag(Xp.T @ Yp)
    loss1 = np.maximum(0, margin - (positive - np.diag(Xp.T @ Yn)))
    loss2 = np.maximum(0, margin - (positive - np.diag(Yp.T @ Xn)))
    return loss1 + loss2


@pytest.mark.parametrize("margin", [1.0, 0.2])
def test_half_batch_ranking_loss_is_the_authors_rankloss(margin):
    rng = np.random.default_rng(int(margin * 10))
    b, d = 8, 6
    img = rng.normal(size=(b, d)).astype(np.float32)
    txt = (img + rng.normal(size=(b, d)) * 0.7).astype(np.float32)
    # theirs: anchors first, negatives second; ours interleaves anchor j with its negative
    ours_img = interleave(tf.constant(img[:4]), tf.constant(img[4:]))
    ours_txt = interleave(tf.constant(txt[:4]), tf.constant(txt[4:]))
    labels = interleave(tf.range(4), tf.range(4, 8))
    got = half_batch_ranking_loss(ours_img, ours_txt, labels, margin).numpy()
    assert got.shape == (4,)
    np.testing.assert_allclose(got, np_rank_loss(img, txt, margin), rtol=1e-5, atol=1e-6)
    # the trainer sums the 4 anchors and divides by the batch of 8: half the weight a mean over
    # every example (VSE++'s layout) would give
    assert abs(got.sum() / 8 - got.mean() / 2) < 1e-6


def test_a_negative_image_of_the_anchors_class_adds_no_image_term_when_none_can_replace_it():
    """The batch holds no image of another class to redraw from (tests/test_fidelity.py: the
    redraw)."""
    img = tf.constant([[1.0, 0.0], [0.6, 0.8]])   # anchor image, negative image
    txt = tf.constant([[1.0, 0.0], [0.8, 0.6]])   # anchor caption, negative caption
    other = half_batch_ranking_loss(img, txt, tf.constant([0, 1]), 1.0).numpy()
    same = half_batch_ranking_loss(img, txt, tf.constant([0, 0]), 1.0).numpy()
    # positive 1; caption side 1 − 1 + 0.8; image side 1 − 1 + 0.6
    np.testing.assert_allclose(other, [0.8 + 0.6], rtol=1e-6)
    np.testing.assert_allclose(same, [0.8], rtol=1e-6)  # the caption side only


def test_hardest_of_pool_picks_the_most_similar_caption_of_another_instance():
    anchors = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pool = tf.constant([[5.0, 0.0, 0.0],    # same class as anchor 0: never its negative
                        [0.9, 0.1, 0.0],
                        [0.0, 0.2, 1.0],
                        [0.1, 0.9, 0.3]])
    pick = hardest_of_pool(anchors, tf.constant([10, 11]), pool,
                           tf.constant([10, 12, 13, 11])).numpy()
    assert list(pick) == [1, 2]  # anchor 1's closest (row 3) is its own class


def test_hardest_of_pool_leaves_out_every_image_of_the_batch():
    """train_flickr_word_Rankloss_shift_hard.m: `ind(batch) = 0` before drawing the pool, so no
    image of the batch (anchor or negative row) gives a negative caption; before issue 23 only
    the anchor's own class was left out and row 1 (class 20, the negative row's image) won."""
    anchors = tf.constant([[1.0, 0.0, 0.0]])
    pool = tf.constant([[0.9, 0.1, 0.0],     # class 20: the other image of the batch
                        [0.5, 0.5, 0.0],
                        [0.0, 1.0, 0.0]])
    pool_labels = tf.constant([20, 30, 31])
    assert list(hardest_of_pool(anchors, tf.constant([10]), pool, pool_labels).numpy()) == [0]
    pick = hardest_of_pool(anchors, tf.constant([10]), pool, pool_labels,
                           batch_labels=tf.constant([10, 20])).numpy()
    assert list(pick) == [1]
