"""Instance loss and the bidirectional ranking loss (METHOD.md, "Shared classifier and losses").

Both return one value per local example; the trainer sums them and divides by the GLOBAL batch
size, so gradients summed over replicas equal a single-device step. Ranking negatives are drawn
from the features of every replica (`gather_replicas`), as one big batch would have them.
"""
from __future__ import annotations

import tensorflow as tf

NEGATIVE_MODES = ("hardest_in_batch", "hardest_of_pool")
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


def _hardest(similarity: tf.Tensor, same: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.where(same, _MASKED, similarity), axis=1)


def _random_negative(similarity: tf.Tensor, same: tf.Tensor, seed=None) -> tf.Tensor:
    """Similarity to one uniformly random candidate of another instance (the paper's image side)."""
    noise = tf.random.uniform(tf.shape(similarity), seed=seed)
    pick = tf.argmax(tf.where(same, -1.0, noise), axis=1, output_type=tf.int32)
    chosen = tf.gather(similarity, pick, axis=1, batch_dims=1)
    return tf.where(tf.reduce_all(same, axis=1), _MASKED, chosen)


def ranking_loss(image_features: tf.Tensor, text_features: tf.Tensor, labels: tf.Tensor,
                 margin: float = 1.0, negatives: str = "hardest_in_batch",
                 pool_features: tf.Tensor | None = None, pool_labels: tf.Tensor | None = None,
                 seed=None) -> tf.Tensor:
    """Bidirectional hinge on cosine similarity, one negative caption and one negative image.

    hardest_in_batch: the most similar caption and image of another instance in the (global)
        batch (VSE++-style).
    hardest_of_pool: the paper's rule — the most similar of a pool of random training captions,
        and a random image of another instance from the batch.
    """
    if negatives not in NEGATIVE_MODES:
        raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")
    image = tf.math.l2_normalize(tf.cast(image_features, tf.float32), axis=1)
    text = tf.math.l2_normalize(tf.cast(text_features, tf.float32), axis=1)
    labels = tf.cast(labels, tf.int64)
    positive = tf.reduce_sum(image * text, axis=1)

    all_image, all_text = gather_replicas(image), gather_replicas(text)
    all_labels = gather_replicas(labels)
    same_in_batch = tf.equal(labels[:, None], all_labels[None, :])
    image_vs_images = tf.matmul(text, all_image, transpose_b=True)  # caption → other images

    if negatives == "hardest_in_batch":
        neg_caption = _hardest(tf.matmul(image, all_text, transpose_b=True), same_in_batch)
        neg_image = _hardest(image_vs_images, same_in_batch)
    else:
        if pool_features is None or pool_labels is None:
            raise ValueError("negatives='hardest_of_pool' needs pool_features and pool_labels")
        pool = gather_replicas(tf.math.l2_normalize(tf.cast(pool_features, tf.float32), axis=1))
        pool_labels = gather_replicas(tf.cast(pool_labels, tf.int64))
        same_in_pool = tf.equal(labels[:, None], pool_labels[None, :])
        neg_caption = _hardest(tf.matmul(image, pool, transpose_b=True), same_in_pool)
        neg_image = _random_negative(image_vs_images, same_in_batch, seed)
    return tf.nn.relu(margin - positive + neg_caption) + tf.nn.relu(margin - positive + neg_image)
