"""Instance loss and the bidirectional ranking loss (docs/method.md, "Shared classifier and
losses").

The losses return one value per local example (or anchor); the trainer sums them and divides by
the GLOBAL batch size, so gradients summed over replicas equal a single-device step — and, for
the authors' RankLoss, the hinge is summed over the B/2 anchors and divided by B, as MatConvNet
does. Mining pools and in-batch negatives are drawn from every replica (`gather_replicas`), as
one big batch would have them.
"""
from __future__ import annotations

import tensorflow as tf

NEGATIVE_MODES = ("hardest_of_pool", "random", "hardest_in_batch")
HALF_BATCH_MODES = ("hardest_of_pool", "random")  # the authors' batch layout (RankLoss.m)
_MASKED = -4.0  # below any cosine similarity: a masked candidate can never be the max


def instance_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy against the instance label, per example, in float32."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))


def gather_replicas(x: tf.Tensor) -> tf.Tensor:
    """Concatenate `x` over all replicas (identity outside a multi-replica step)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_gather(x, axis=0)


def _normalized(x: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=1)


def anchors(x: tf.Tensor) -> tf.Tensor:
    """Even rows of a half-batch layout: the anchors (image + its own caption)."""
    return x[0::2]


def negatives(x: tf.Tensor) -> tf.Tensor:
    """Odd rows: row 2j+1 holds anchor 2j's negative image and negative caption."""
    return x[1::2]


def interleave(anchor_rows: tf.Tensor, negative_rows: tf.Tensor) -> tf.Tensor:
    """[a0, a1, …] and [n0, n1, …] → [a0, n0, a1, n1, …] (the half-batch layout)."""
    stacked = tf.stack([anchor_rows, negative_rows], axis=1)
    return tf.reshape(stacked, tf.concat([[-1], tf.shape(anchor_rows)[1:]], axis=0))


def hardest_of_pool(anchor_images: tf.Tensor, anchor_labels: tf.Tensor, pool_features: tf.Tensor,
                    pool_labels: tf.Tensor, batch_labels: tf.Tensor | None = None) -> tf.Tensor:
    """Index of the most similar pool caption of another instance, per anchor image.

    The authors mine with the current model in test mode and no gradient (getBatch of
    train_flickr_word_Rankloss_shift_hard.m); the pool is gathered from every replica, as one
    device would hold it. Their pool leaves out images of the batch (Flickr30k: every one,
    `ind(batch) = 0`; MSCOCO: the anchors'): with `batch_labels` (those images' classes,
    gathered from every replica too) a pool caption of any of them is never picked, otherwise
    only the anchor's own class is excluded.
    """
    pool = gather_replicas(_normalized(pool_features))
    pool_labels = gather_replicas(tf.cast(pool_labels, tf.int64))
    similarity = tf.matmul(_normalized(anchor_images), pool, transpose_b=True)
    same = tf.equal(tf.cast(anchor_labels, tf.int64)[:, None], pool_labels[None, :])
    if batch_labels is not None:
        batch = gather_replicas(tf.cast(batch_labels, tf.int64))
        in_batch = tf.reduce_any(tf.equal(batch[:, None], pool_labels[None, :]), axis=0)
        same = tf.logical_or(same, in_batch[None, :])
    return tf.argmax(tf.where(same, _MASKED, similarity), axis=1, output_type=tf.int32)


def half_batch_ranking_loss(image_features: tf.Tensor, text_features: tf.Tensor,
                            image_labels: tf.Tensor, margin: float = 1.0,
                            redraw: bool = True) -> tf.Tensor:
    """The authors' RankLoss on a half-batch layout, one value per anchor [B/2].

    Anchor j (row 2j) has image X_p and caption Y_p; row 2j+1 holds its negative image X_n (a
    random other image of the batch) and negative caption Y_n (mined, or random):
    max(0, m − (X_p·Y_p − X_p·Y_n)) + max(0, m − (X_p·Y_p − Y_p·X_n)) on L2-normalised features.
    A negative image of the anchor's own class (CUHK-PEDES person labels) is redrawn, as the
    authors redraw it from another person (train_cuhk_Rankloss_shift.m, rand_diff_class3.m):
    with `redraw`, the batch's next image of another class (`redrawn_negative_images`); the
    image-side term is dropped only where none is left. Without `redraw` (runs before
    config_version 4) that term is dropped whenever row 2j+1 is of the anchor's class.
    """
    image, text = _normalized(image_features), _normalized(text_features)
    positive = tf.reduce_sum(anchors(image) * anchors(text), axis=1)
    caption_side = tf.nn.relu(margin - positive
                              + tf.reduce_sum(anchors(image) * negatives(text), 1))
    if redraw:
        negative_image, other = redrawn_negative_images(image, image_labels)
    else:
        negative_image = negatives(image)
        other = tf.not_equal(anchors(image_labels), negatives(image_labels))
    image_side = tf.nn.relu(margin - positive
                            + tf.reduce_sum(anchors(text) * negative_image, 1))
    return caption_side + image_side * tf.cast(other, tf.float32)


def redrawn_negative_images(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each anchor's negative image [B/2, D] and whether it has one [B/2] (bool): the first image
    of another class after the anchor's row, cyclically over the batch (gathered from every
    replica, in global row order, as one device would hold it). Row 2j+1 wherever it is of
    another class, as before; with every image of the anchor's class, none."""
    all_images = gather_replicas(images)
    all_labels = gather_replicas(tf.cast(labels, tf.int64))
    local, total = tf.shape(labels)[0], tf.shape(all_labels)[0]
    ctx = tf.distribute.get_replica_context()
    replica = 0 if ctx is None else tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    rows = replica * local + tf.range(0, local, 2)                     # the anchors' global rows
    candidates = (rows[:, None] + tf.range(1, total)[None, :]) % total  # [B/2, G−1], in order
    anchor_labels = anchors(tf.cast(labels, tf.int64))
    other = tf.not_equal(tf.gather(all_labels, candidates), anchor_labels[:, None])
    first = tf.argmax(tf.cast(other, tf.int32), axis=1, output_type=tf.int32)  # first True
    pick = tf.gather(candidates, first, batch_dims=1)
    # a one-hot product, not a gather: all_gather's gradient takes dense tensors only
    chosen = tf.matmul(tf.one_hot(pick, total, dtype=all_images.dtype), all_images)
    return chosen, tf.reduce_any(other, axis=1)


def _hardest(similarity: tf.Tensor, same: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.where(same, _MASKED, similarity), axis=1)


def ranking_loss(image_features: tf.Tensor, text_features: tf.Tensor, labels: tf.Tensor,
                 margin: float = 1.0) -> tf.Tensor:
    """VSE++'s hardest-in-batch hinge, one value per example [B] (every example an anchor).

    The most similar caption and image of another instance in the (global) batch; not the
    authors' rule (`half_batch_ranking_loss`), kept as --negatives=hardest_in_batch.
    """
    image, text = _normalized(image_features), _normalized(text_features)
    labels = tf.cast(labels, tf.int64)
    positive = tf.reduce_sum(image * text, axis=1)
    all_image, all_text = gather_replicas(image), gather_replicas(text)
    same = tf.equal(labels[:, None], gather_replicas(labels)[None, :])
    neg_caption = _hardest(tf.matmul(image, all_text, transpose_b=True), same)
    neg_image = _hardest(tf.matmul(text, all_image, transpose_b=True), same)
    return tf.nn.relu(margin - positive + neg_caption) + tf.nn.relu(margin - positive + neg_image)
