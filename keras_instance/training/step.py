"""The training step: instance losses + ranking loss, per-layer learning rates, weight decay.

`InstanceTrainer` wraps the functional dual-path model so `fit` brings the progress bar,
TensorBoard, per-epoch backups and MirroredStrategy for free, while the step itself follows the
authors' MatConvNet recipe: gradient g of each parameter becomes (g + wd·w)·multiplier, which for
SGD with momentum is exactly a per-layer learning rate and weight-decay setting.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_instance.config import NEGATIVE_IMAGES, POOL_EXCLUDES
from keras_instance.model import backbones, losses
from keras_instance.model.dual_path import DualPath

# weight_decay_on="kernels": the variables decayed (this project's first rule)
_KERNELS = ("kernel", "embeddings", "depthwise_kernel")


def variable_group(dual_backbone_ids: set, variable, backbone_kinds: dict | None = None) -> str:
    """Learning-rate group of docs/method.md from where a variable lives and its name.

    backbone variables: their kind group (`backbone_kind`, from `backbone_kinds`: id → group),
    else "backbone"; classifier (W; its bias: classifier_bias, at twice W's learning rate as
    MatConvNet gives biases), word (the word2vec layer), bn_gamma / bn_beta (the heads' and
    text CNN's BN), new (every other head / text CNN weight).
    """
    if id(variable) in dual_backbone_ids:
        return (backbone_kinds or {}).get(id(variable), "backbone")
    layer = variable.path.split("/")[-2] if "/" in variable.path else ""
    if layer == "shared_classifier":
        return "classifier_bias" if variable.name == "bias" else "classifier"
    if layer == "word_embedding":
        return "word"
    return {"gamma": "bn_gamma", "beta": "bn_beta"}.get(variable.name, "new")


def backbone_kinds(backbone, backbone_name: str) -> dict[int, str]:
    """id(variable) → the backbone kind group of each backbone variable.

    The authors' Stage II rule is by MatConvNet parameter number (config.DEFAULT_LR_MULTIPLIERS):
    in their ResNet-50 it gives the first conv's kernel `backbone_stem`, the other conv kernels
    `backbone_kernel`, conv biases `backbone_bias`, BN γ / β `backbone_gamma` / `backbone_beta`.
    Every conv + BN backbone here (ResNet, MobileNetV2, tiny_cnn) is read the same way. VGG-19
    (no BN; their order: filter, bias per layer, filters odd-numbered) gives its kernels the
    odd-numbered rate, the plain `backbone` group, its biases `backbone_bias`, and its first
    kernel `backbone_stem`.
    """
    vgg = backbones.spec(backbone_name).kind == "fc"
    kinds, stem_seen = {}, False
    for v in backbone.weights:  # layer order: the first kernel is the first conv's
        name = v.name
        if name in ("kernel", "depthwise_kernel"):
            kind = ("backbone_stem" if not stem_seen
                    else "backbone" if vgg else "backbone_kernel")
            stem_seen = True
        else:
            kind = {"bias": "backbone_bias", "gamma": "backbone_gamma",
                    "beta": "backbone_beta"}.get(name, "backbone")
        kinds[id(v)] = kind
    return kinds


def variable_groups(dual: DualPath) -> dict[int, str]:
    """id(variable) → learning-rate group (`variable_group`) for every weight of the model."""
    backbone_ids = {id(v) for v in dual.backbone.weights}
    kinds = backbone_kinds(dual.backbone, dual.backbone_name)
    return {id(v): variable_group(backbone_ids, v, kinds)
            for part in (dual.backbone, dual.image_head, dual.text_encoder, dual.classifier)
            for v in part.weights}


def group_multiplier(multipliers: dict, group: str) -> float:
    """The multiplier of `group`; a backbone kind group missing from `multipliers` (what a
    caller built before the kind groups passes) falls back to `backbone`."""
    if group == "classifier_bias":
        return 2.0 * multipliers.get("classifier", 1.0)
    if group.startswith("backbone_") and group not in multipliers:
        return multipliers.get("backbone", 1.0)
    return multipliers.get(group, 1.0)


class InstanceTrainer(keras.Model):
    """Runs one optimisation step of Stage I or II on a batch ({inputs}, instance labels)."""

    def __init__(self, dual: DualPath, image_input: str = "image", loss_weights=(0, 1, 1),
                 margin: float = 1.0,
                 negatives: str = "hardest_in_batch", lr_multipliers: dict | None = None,
                 weight_decay: float = 1e-4, weight_decay_on: str = "all",
                 pool_excludes: str = "batch", negative_image: str = "redraw", **kwargs):
        super().__init__(**kwargs)
        for name, value, allowed in (("pool_excludes", pool_excludes, POOL_EXCLUDES),
                                     ("negative_image", negative_image, NEGATIVE_IMAGES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                                 f"{value!r}")
        self.dual = dual
        self.image_input = image_input  # dual_path.IMAGE_INPUTS
        self.network = dual.training_model(image_input=self.image_input)
        self.built = True  # the functional network is built; BackupAndRestore requires this
        self.rank_weight, self.image_weight, self.text_weight = (float(w) for w in loss_weights)
        self.margin = margin
        self.negatives = negatives
        self.pool_excludes = pool_excludes
        self.negative_image = negative_image
        self.lr_multipliers = dict(lr_multipliers or {})
        self.weight_decay = weight_decay
        self.weight_decay_on = weight_decay_on
        self._groups = variable_groups(dual)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "image_loss", "text_loss", "rank_loss", "image_acc", "text_acc")}

    def call(self, inputs, training=False):
        return self.network({k: v for k, v in inputs.items() if k in (self.image_input, "tokens")},
                            training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build the optimizer before the step is traced; the functional network is built at
        construction.

        Without an explicit strategy Keras builds nothing here, so the optimizer's slots were
        created inside the step's first trace and TensorFlow traced the whole step twice
        (variable creation, then the real trace): half of a tiny run's start-up. Keras' own
        version also all-reduces a whole input batch just to read its shapes, which fails under
        MultiWorkerMirroredStrategy (a dict of PerReplica values cannot go through collective
        ops); nothing here needs those shapes.
        """
        with self.distribute_strategy.scope():  # the default strategy when none was set
            self._symbolic_build(data_batch=None)

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def half_batch(self) -> bool:
        """The authors' layout: even rows anchors, odd rows their negatives (RankLoss.m)."""
        return bool(self.rank_weight) and self.negatives in losses.HALF_BATCH_MODES

    def negative_captions(self, inputs, labels):
        """Each anchor's negative caption (tokens, class) [B/2], chosen without gradients.

        hardest_of_pool: the pool captions and the anchor images are encoded in test mode (as
        the authors mine) and the most similar caption of an instance outside the batch is
        taken (their Flickr30k pool leaves out every image of the batch; with
        pool_excludes="anchors", as their MSCOCO pool, only the anchors' images); random:
        the random caption of another instance that the input pipeline drew.
        """
        if self.negatives == "random":
            return (losses.anchors(inputs["neg_tokens"]), losses.anchors(inputs["neg_labels"]))
        image = self.dual.image_features(losses.anchors(inputs[self.image_input]),
                                         self.image_input, training=False)
        anchor_features = self.dual.image_head(image, training=False)["relu"]
        pool_tokens = inputs["pool_tokens"]  # [b, k, L]: k pool captions per example
        length = tf.shape(pool_tokens)[-1]
        pool_tokens = tf.reshape(pool_tokens, [-1, length])
        pool_labels = tf.reshape(inputs["pool_labels"], [-1])
        pool_features = self.dual.text_encoder(pool_tokens, training=False)["relu"]
        left_out = labels if self.pool_excludes == "batch" else losses.anchors(labels)
        pick = losses.hardest_of_pool(anchor_features, losses.anchors(labels), pool_features,
                                      pool_labels, batch_labels=left_out)
        return (tf.gather(losses.gather_replicas(pool_tokens), pick),
                tf.gather(losses.gather_replicas(pool_labels), pick))

    def text_batch(self, inputs, labels):
        """(tokens, classes) the text branch trains on: the captions as given, or, in the
        half-batch layout, anchors' captions interleaved with their negative captions — which,
        re-encoded in training mode, get the text instance loss too (as in the authors' code)."""
        if not self.half_batch:
            return inputs["tokens"], labels
        neg_tokens, neg_labels = self.negative_captions(inputs, labels)
        neg_tokens, neg_labels = tf.stop_gradient(neg_tokens), tf.stop_gradient(neg_labels)
        return (losses.interleave(losses.anchors(inputs["tokens"]), neg_tokens),
                losses.interleave(losses.anchors(labels), tf.cast(neg_labels, labels.dtype)))

    def compute_losses(self, inputs, labels, text_tokens, text_labels, training=True):
        """Loss terms and the total, scaled for summing over replicas.

        Instance losses per example; the ranking loss per anchor (all B examples with VSE++'s
        hardest_in_batch, B/2 in the authors' layout); the total divides their weighted sums by
        the GLOBAL batch size.
        """
        out = self({**inputs, "tokens": text_tokens}, training=training)
        image_ce = losses.instance_loss(labels, out["image_logits"])
        text_ce = losses.instance_loss(text_labels, out["text_logits"])
        if not self.rank_weight:
            rank = tf.zeros_like(image_ce)
        elif self.half_batch:
            rank = losses.half_batch_ranking_loss(out["image_relu"], out["text_relu"], labels,
                                                  self.margin,
                                                  redraw=self.negative_image == "redraw")
        else:
            rank = losses.ranking_loss(out["image_relu"], out["text_relu"], labels, self.margin)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(tf.shape(image_ce)[0] * replicas, tf.float32)
        total = (self.rank_weight * tf.reduce_sum(rank)
                 + self.image_weight * tf.reduce_sum(image_ce)
                 + self.text_weight * tf.reduce_sum(text_ce)) / global_batch
        # "loss" per replica: its weighted sums over its own examples, so the metric's mean over
        # replicas is the global one
        return total, out, {"image_loss": image_ce, "text_loss": text_ce, "rank_loss": rank,
                            "loss": total * tf.cast(replicas, tf.float32)}

    def train_step(self, data):
        inputs, labels = data
        variables = self.trainable_variables
        text_tokens, text_labels = self.text_batch(inputs, labels)  # mining: outside the tape
        with tf.GradientTape() as tape:
            total, out, terms = self.compute_losses(inputs, labels, text_tokens, text_labels)
            scaled = self.optimizer.scale_loss(total)  # mixed_float16: LossScaleOptimizer
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(self._adjust(grads, variables), variables)
        self._track(terms, out, labels, text_labels)
        return self._results()

    def _track(self, terms, out, labels, text_labels):
        for name, values in terms.items():
            self.trackers[name].update_state(values)
        for branch, truth in (("image", labels), ("text", text_labels)):
            hit = tf.equal(tf.argmax(out[f"{branch}_logits"], axis=1, output_type=tf.int64),
                           tf.cast(truth, tf.int64))
            self.trackers[f"{branch}_acc"].update_state(tf.cast(hit, tf.float32))

    def _results(self):
        """Metric values; shape [1] under MultiWorkerMirroredStrategy, whose Keras reduction
        (`strategy.reduce(MEAN, v, axis=0)`) rejects the scalars every other strategy takes."""
        results = {name: t.result() for name, t in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: tf.reshape(v, [1]) for name, v in results.items()}
        return results

    def _adjust(self, grads, variables):
        """(g + wd·w) · multiplier per variable; frozen groups (multiplier 0) get zero steps.

        weight_decay_on="all" decays every trainable parameter, BN γ/β and biases included, as
        the authors' MatConvNet does (weightDecay 1 on all of them).

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
            if self.weight_decay and (self.weight_decay_on == "all" or v.name in _KERNELS):
                decay = (self.weight_decay / replicas) * tf.cast(v.value, g.dtype)
                if loss_scale is not None:
                    decay = decay * tf.cast(loss_scale, g.dtype)
                g = g + decay
            adjusted.append(g * group_multiplier(self.lr_multipliers, group))
        return adjusted

    def test_step(self, data):
        inputs, labels = data
        text_tokens, text_labels = self.text_batch(inputs, labels)
        _, out, terms = self.compute_losses(inputs, labels, text_tokens, text_labels,
                                            training=False)
        self._track(terms, out, labels, text_labels)
        return self._results()
