"""The training step: instance losses + ranking loss, per-layer learning rates, weight decay.

`InstanceTrainer` wraps the functional dual-path model so `fit` brings the progress bar,
TensorBoard, per-epoch backups and MirroredStrategy for free, while the step itself follows the
authors' MatConvNet recipe: gradient g of each parameter becomes (g + wd·w)·multiplier, which for
SGD with momentum is exactly a per-layer learning rate and weight-decay setting.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from keras_instance import losses
from keras_instance.model import DualPath

_DECAYED = ("kernel", "embeddings", "depthwise_kernel")


def variable_groups(dual: DualPath) -> dict[int, str]:
    """id(variable) → learning-rate group of METHOD.md (new, classifier, word, bn_*, backbone)."""
    groups: dict[int, str] = {}
    for part in (dual.image_head, dual.text_encoder):
        for layer in part._flatten_layers(include_self=False):
            for v in layer.weights:
                if isinstance(layer, layers.BatchNormalization):
                    groups[id(v)] = {"gamma": "bn_gamma", "beta": "bn_beta"}.get(v.name, "new")
                else:
                    groups[id(v)] = "new"
    for v in dual.text_encoder.get_layer("word_embedding").weights:
        groups[id(v)] = "word"
    for v in dual.backbone.weights:
        groups[id(v)] = "backbone"
    groups[id(dual.classifier.kernel)] = "classifier"
    return groups


class InstanceTrainer(keras.Model):
    """Runs one optimisation step of Stage I or II on a batch ({inputs}, instance labels)."""

    def __init__(self, dual: DualPath, from_features: bool, loss_weights, margin: float = 1.0,
                 negatives: str = "hardest_in_batch", lr_multipliers: dict | None = None,
                 weight_decay: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.dual = dual
        self.network = dual.training_model(from_features=from_features)
        self.built = True  # the functional network is built; BackupAndRestore requires this
        self.rank_weight, self.image_weight, self.text_weight = (float(w) for w in loss_weights)
        self.margin = margin
        self.negatives = negatives
        self.lr_multipliers = dict(lr_multipliers or {})
        self.weight_decay = weight_decay
        self._groups = variable_groups(dual)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "image_loss", "text_loss", "rank_loss", "image_acc", "text_acc")}

    def call(self, inputs, training=False):
        return self.network({k: v for k, v in inputs.items() if k in ("image", "image_features",
                                                                       "tokens")},
                            training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build the optimizer only; the functional network is built at construction.

        Keras' own version first all-reduces a whole input batch just to read its shapes, which
        fails under MultiWorkerMirroredStrategy (a dict of PerReplica values cannot go through
        collective ops); nothing here needs those shapes.
        """
        if self._distribute_strategy is None:
            return
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=None)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compute_losses(self, inputs, labels, training=True):
        """Per-example loss terms and the total, scaled for summing over replicas."""
        out = self(inputs, training=training)
        image_ce = losses.instance_loss(labels, out["image_logits"])
        text_ce = losses.instance_loss(labels, out["text_logits"])
        rank = tf.zeros_like(image_ce)
        if self.rank_weight:
            pool_features = pool_labels = None
            if self.negatives == "hardest_of_pool":
                pool_tokens = inputs["pool_tokens"]  # [b, k, L]: k pool captions per example
                flat = tf.reshape(pool_tokens, [-1, tf.shape(pool_tokens)[-1]])
                pool_features = self.dual.text_encoder(flat, training=False)["relu"]
                pool_labels = tf.reshape(inputs["pool_labels"], [-1])
            rank = losses.ranking_loss(out["image_relu"], out["text_relu"], labels, self.margin,
                                       self.negatives, pool_features, pool_labels)
        per_example = (self.rank_weight * rank + self.image_weight * image_ce
                       + self.text_weight * text_ce)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(tf.shape(per_example)[0] * replicas, tf.float32)
        total = tf.reduce_sum(per_example) / global_batch
        return total, out, {"image_loss": image_ce, "text_loss": text_ce, "rank_loss": rank,
                            "loss": per_example}

    def train_step(self, data):
        inputs, labels = data
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            total, out, terms = self.compute_losses(inputs, labels, training=True)
            scaled = self.optimizer.scale_loss(total)  # mixed_float16: LossScaleOptimizer
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(self._adjust(grads, variables), variables)
        for name, values in terms.items():
            self.trackers[name].update_state(values)
        for branch in ("image", "text"):
            hit = tf.equal(tf.argmax(out[f"{branch}_logits"], axis=1, output_type=tf.int64),
                           tf.cast(labels, tf.int64))
            self.trackers[f"{branch}_acc"].update_state(tf.cast(hit, tf.float32))
        return self._results()

    def _results(self):
        """Metric values; shape [1] under MultiWorkerMirroredStrategy, whose Keras reduction
        (`strategy.reduce(MEAN, v, axis=0)`) rejects the scalars every other strategy takes."""
        results = {name: t.result() for name, t in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: tf.reshape(v, [1]) for name, v in results.items()}
        return results

    def _adjust(self, grads, variables):
        """(g + wd·w) · multiplier per variable; frozen groups (multiplier 0) get zero steps.

        Under a LossScaleOptimizer the gradients arrive multiplied by the loss scale s, and the
        optimizer divides by s before its update: the decay term is scaled by s to match. Under
        a multi-replica strategy the optimizer SUMS the replicas' gradients (the loss is already
        divided by the global batch), so each replica adds 1/replicas of the decay: N replicas
        decay like one device, not N times as much.
        """
        loss_scale = None
        optimizer = getattr(self, "optimizer", None)  # uncompiled: plain gradients
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            loss_scale = (optimizer.dynamic_scale if optimizer.built
                          else optimizer.initial_scale)  # as its scale_loss reads it
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        adjusted = []
        for g, v in zip(grads, variables):
            if g is None:
                adjusted.append(g)
                continue
            group = self._groups.get(id(v), "new")
            if isinstance(g, tf.IndexedSlices):  # word lookups: decay touches every row anyway
                g = tf.convert_to_tensor(g)
            if self.weight_decay and v.name in _DECAYED:
                decay = (self.weight_decay / replicas) * tf.cast(v.value, g.dtype)
                if loss_scale is not None:
                    decay = decay * tf.cast(loss_scale, g.dtype)
                g = g + decay
            adjusted.append(g * self.lr_multipliers.get(group, 1.0))
        return adjusted

    def test_step(self, data):
        inputs, labels = data
        _, _, terms = self.compute_losses(inputs, labels, training=False)
        for name, values in terms.items():
            self.trackers[name].update_state(values)
        return self._results()
