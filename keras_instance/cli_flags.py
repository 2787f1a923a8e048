"""Command-line flags shared by the programs (train, evaluate), turned into a `Config`.

One set of flags for every program, so a single `--flagfile` (configs/*.flags) drives the whole
workflow. The library never reads these: programs call `config_from_flags()` and pass the result.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from keras_instance.config import (CLASSIFIER_INITS, DECAYED, DEFAULT_LR_MULTIPLIERS, NEGATIVES,
                                   RUN_FIELDS, TEST_FEATURES, TEST_GEOMETRIES, TEST_TIME_FIELDS,
                                   TEXT_LAYOUTS, Config, flag_text)

_D = Config()

# Data
flags.DEFINE_string("dataset", _D.dataset,
                    "demo | flickr8k | flickr30k (authors' split) | flickr30k_karpathy | coco | "
                    "cuhk_pedes | karpathy | manifest")
flags.DEFINE_string("data_dir", _D.data_dir, "Dataset folder (or manifest .jsonl for 'manifest').")
flags.DEFINE_string("workdir", _D.workdir, "Run folder: config, vocabulary, checkpoints, logs.")
flags.DEFINE_integer("max_length", _D.max_length, "Words kept per sentence (CUHK-PEDES: 56).")
flags.DEFINE_integer("min_word_count", _D.min_word_count, "Vocabulary: minimum training count.")
flags.DEFINE_enum("unknown_words", _D.unknown_words, ["drop", "unk"],
                  "Words outside the vocabulary: dropped (paper) or mapped to <unk>.")
flags.DEFINE_string("word2vec", None, "Pretrained vectors (.bin/.txt/.kv); unset: train on captions.")
flags.DEFINE_integer("word_dim", _D.word_dim, "Word vector size.")
# Image branch
flags.DEFINE_string("backbone", _D.backbone, "resnet50 | resnet152 | vgg19 | mobilenet_v2 | tiny_cnn")
flags.DEFINE_string("backbone_weights", _D.backbone_weights,
                    "'imagenet' (download), a weights-file path (offline), or 'none'.")
flags.DEFINE_enum("vgg_fc7", _D.vgg_fc7, ["pre_relu", "post_relu"],
                  "VGG-19 feature: fc7 before its ReLU (the authors') or after (keras' fc2).")
flags.DEFINE_integer("image_size", _D.image_size, "Square input size in pixels.")
flags.DEFINE_list("image_head_units", list(map(str, _D.image_head_units)),
                  "Hidden fc widths of the image head before the embedding fc.")
flags.DEFINE_boolean("random_flip", _D.random_flip, "Random horizontal flips in training.")
flags.DEFINE_list("crop_scale", list(map(str, _D.crop_scale)), "Random crop side range.")
# Text branch
flags.DEFINE_list("text_widths", list(map(str, _D.text_widths)), "Output width of each stage.")
flags.DEFINE_list("text_blocks", list(map(str, _D.text_blocks)), "Residual blocks per stage.")
flags.DEFINE_enum("text_pooling", _D.text_pooling, ["max", "avg"], "Pooling over positions.")
flags.DEFINE_enum("text_layout", _D.text_layout, list(TEXT_LAYOUTS),
                  "authors: stride 2 on the left-padded 1×2 conv, stage-1 first bottleneck "
                  "width/2 (their net); v1: this project's first layout (old runs).")
flags.DEFINE_integer("embed_dim", _D.embed_dim, "Joint embedding size (fc width of both heads).")
flags.DEFINE_float("dropout", _D.dropout, "Drop probability (Flickr30k 0.75, COCO 0.5, CUHK 0.8).")
flags.DEFINE_boolean("position_shift", _D.position_shift, "Position Shift augmentation.")
flags.DEFINE_boolean("sync_batchnorm", _D.sync_batchnorm,
                     "Batch statistics over all replicas (heads, text CNN, tiny_cnn).")
flags.DEFINE_string("kernel_initializer", _D.kernel_initializer,
                    "Keras initializer of the new layers' kernels (lecun_uniform: the authors' "
                    "MatConvNet U(±sqrt(3/fan_in)); glorot_uniform: Keras' default).")
flags.DEFINE_enum("classifier_init", _D.classifier_init, list(CLASSIFIER_INITS),
                  "Shared classifier W: authors (U(±sqrt(3/fan_in)) × 0.1) or he (He-normal × 0.1).")
flags.DEFINE_boolean("classifier_bias", _D.classifier_bias,
                     "The shared classifier has one bias, shared too (the authors', Flickr/CUHK).")
# Losses
flags.DEFINE_list("loss_weights", None, "rank,image,text; unset: Stage I 0,1,1, Stage II 2,1,0.1.")
flags.DEFINE_float("margin", _D.margin, "Ranking loss margin.")
flags.DEFINE_enum("negatives", _D.negatives, list(NEGATIVES),
                  "Ranking negatives. hardest_of_pool (authors, Flickr/COCO) and random "
                  "(authors, CUHK-PEDES): half the batch are anchors, each with the next image "
                  "as its negative image and the hardest of --negative_pool random captions "
                  "(or a random caption of another instance) as its negative caption; "
                  "hardest_in_batch (VSE++): every example an anchor, in-batch hardest.")
flags.DEFINE_integer("negative_pool", _D.negative_pool, "Pool size for hardest_of_pool.")
# Optimisation
flags.DEFINE_enum("optimizer", _D.optimizer, ["sgd"], "SGD with Nesterov momentum.")
flags.DEFINE_string("lr_schedule", None, "'lr:epochs,...' for the stage being trained.")
flags.DEFINE_string("stage1_lr_schedule", _D.stage1_lr_schedule, "Stage I schedule.")
flags.DEFINE_string("stage2_lr_schedule", _D.stage2_lr_schedule, "Stage II schedule.")
flags.DEFINE_list("lr_multipliers", [],
                  "Overrides of group=multiplier; groups: " + ", ".join(DEFAULT_LR_MULTIPLIERS))
flags.DEFINE_float("weight_decay", _D.weight_decay, "L2 weight decay.")
flags.DEFINE_enum("weight_decay_on", _D.weight_decay_on, list(DECAYED),
                  "all: every trainable parameter, BN γ/β and biases included (the authors'); "
                  "kernels: kernels and word vectors only.")
flags.DEFINE_float("momentum", _D.momentum, "SGD momentum.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size (split over replicas).")
flags.DEFINE_enum("precision", _D.precision, ["auto", "float32", "mixed"],
                  "mixed: compute in mixed_float16 (GPU) or mixed_bfloat16 (CPU), logits, losses "
                  "and variables float32; auto: mixed on GPUs with tensor cores (compute "
                  "capability >= 7.0) and on CPUs with AMX, float32 elsewhere.")
flags.DEFINE_boolean("mixed_precision", False, "Same as --precision=mixed (older flag).")
flags.DEFINE_boolean("jit_compile", _D.jit_compile, "XLA-compile the training step.")
flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution,
                     "Training steps per compiled call (the progress bar moves in such chunks).")
flags.DEFINE_boolean("stage1_freeze_backbone", _D.stage1_freeze_backbone,
                     "Freeze the image backbone in Stage I (paper: yes).")
flags.DEFINE_boolean("stage2_freeze_backbone", _D.stage2_freeze_backbone,
                     "Keep the backbone frozen in Stage II too (CPU-sized runs; paper: no).")
flags.DEFINE_string("finetune_from", None,
                    "Stage II trains the backbone from this layer on (e.g. Conv_1 or "
                    "block_16_expand for mobilenet_v2, conv5_block1_1_conv for resnet50); the "
                    "frozen layers before it run once per cached view into --feature_cache "
                    "(float16 maps on disk), and the trainable rest trains from those maps.")
flags.DEFINE_string("shards", None,
                    "Read training images from these TFRecord shards (python -m "
                    "keras_instance.prepare) instead of one file per image.")
flags.DEFINE_string("feature_cache", None,
                    "Cache the frozen backbone's features in this folder (frozen stages only).")
flags.DEFINE_integer("cache_views", _D.cache_views, "Augmented views per image in the cache.")
flags.DEFINE_integer("seed", _D.seed, "Seed of every random choice.")
flags.DEFINE_enum("labels", _D.labels, ["instance", "kmeans"],
                  "Training classes: one per image (instance loss) or k-means clusters of the "
                  "frozen backbone's image features (pseudo-labels).")
flags.DEFINE_integer("num_clusters", _D.num_clusters, "K for --labels=kmeans.")
# Evaluation
flags.DEFINE_enum("protocol", _D.protocol, ["1k", "coco_1k", "coco_5k", "cuhk"], "Test protocol.")
flags.DEFINE_boolean("test_flip_sum", _D.test_flip_sum, "Sum image features with the mirror image.")
flags.DEFINE_boolean("test_shift_sum", _D.test_shift_sum, "Sum text features over all shifts.")
flags.DEFINE_enum("test_feature", _D.test_feature, list(TEST_FEATURES),
                  "Retrieval embedding: fc+BN before ReLU (the authors') or after ReLU "
                  "(where the ranking loss trains).")
flags.DEFINE_enum("test_geometry", _D.test_geometry, list(TEST_GEOMETRIES),
                  "keep_aspect: short side --test_short_side, the image head at every position "
                  "of the feature map, summed (METHOD.md); squash: image_size × image_size.")
flags.DEFINE_integer("test_short_side", _D.test_short_side,
                     "keep_aspect's short side in pixels; 0: image_size · 256/224.")
flags.DEFINE_integer("eval_batch_size", _D.eval_batch_size, "Images per evaluation batch.")
# Distribution
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "multi_worker", "one_device"],
                  "tf.distribute strategy (mirrored: all visible GPUs, or --num_cpu_replicas CPUs; "
                  "no GPU and no CPU replicas: the default strategy).")
flags.DEFINE_integer("num_cpu_replicas", 0, "Without GPUs: split the CPU into N logical replicas.")

FLAGS = flags.FLAGS


def _multipliers(overrides: list[str]) -> dict:
    out = dict(DEFAULT_LR_MULTIPLIERS)
    for item in overrides:
        group, _, value = item.partition("=")
        if group not in out or not value:
            raise flags.ValidationError(
                f"--lr_multipliers item {item!r}: expected group=value with group in "
                f"{', '.join(out)}")
        out[group] = float(value)
    return out


def config_from_flags() -> Config:
    """The Config the flags describe, validated."""
    return _config_from_flags().validate()


def _config_from_flags() -> Config:
    weights = FLAGS.backbone_weights
    config = dataclasses.replace(
        _D,
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, workdir=FLAGS.workdir,
        max_length=FLAGS.max_length, min_word_count=FLAGS.min_word_count,
        unknown_words=FLAGS.unknown_words, word2vec=FLAGS.word2vec, word_dim=FLAGS.word_dim,
        backbone=FLAGS.backbone,
        backbone_weights=None if (weights or "none").lower() == "none" else weights,
        vgg_fc7=FLAGS.vgg_fc7, image_size=FLAGS.image_size, image_head_units=tuple(map(int, FLAGS.image_head_units)),
        random_flip=FLAGS.random_flip, crop_scale=tuple(map(float, FLAGS.crop_scale)),
        text_widths=tuple(map(int, FLAGS.text_widths)),
        text_blocks=tuple(map(int, FLAGS.text_blocks)), text_pooling=FLAGS.text_pooling,
        text_layout=FLAGS.text_layout, kernel_initializer=FLAGS.kernel_initializer,
        classifier_init=FLAGS.classifier_init, classifier_bias=FLAGS.classifier_bias,
        embed_dim=FLAGS.embed_dim, dropout=FLAGS.dropout, position_shift=FLAGS.position_shift,
        sync_batchnorm=FLAGS.sync_batchnorm,
        loss_weights=tuple(map(float, FLAGS.loss_weights)) if FLAGS.loss_weights else None,
        margin=FLAGS.margin, negatives=FLAGS.negatives, negative_pool=FLAGS.negative_pool,
        optimizer=FLAGS.optimizer, lr_schedule=FLAGS.lr_schedule,
        stage1_lr_schedule=FLAGS.stage1_lr_schedule, stage2_lr_schedule=FLAGS.stage2_lr_schedule,
        lr_multipliers=_multipliers(FLAGS.lr_multipliers), weight_decay=FLAGS.weight_decay,
        weight_decay_on=FLAGS.weight_decay_on,
        momentum=FLAGS.momentum, batch_size=FLAGS.batch_size,
        precision="mixed" if FLAGS.mixed_precision else FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        steps_per_execution=FLAGS.steps_per_execution,
        stage1_freeze_backbone=FLAGS.stage1_freeze_backbone,
        stage2_freeze_backbone=FLAGS.stage2_freeze_backbone, feature_cache=FLAGS.feature_cache,
        finetune_from=FLAGS.finetune_from,
        shards=FLAGS.shards,
        cache_views=FLAGS.cache_views, seed=FLAGS.seed, labels=FLAGS.labels,
        num_clusters=FLAGS.num_clusters, protocol=FLAGS.protocol,
        test_flip_sum=FLAGS.test_flip_sum, test_shift_sum=FLAGS.test_shift_sum,
        test_feature=FLAGS.test_feature, test_geometry=FLAGS.test_geometry,
        test_short_side=FLAGS.test_short_side, eval_batch_size=FLAGS.eval_batch_size)
    return config


def user_errors():
    """Errors a user can fix from the message alone (bad data, paths, settings)."""
    from keras_instance.data.records import DatasetError
    return (DatasetError, FileNotFoundError, FileExistsError, ValueError, flags.ValidationError)


def run_reporting_user_errors(run) -> None:
    """Call `run()`; a user error ends the program with its one-line message, no traceback."""
    try:
        run()
    except user_errors() as err:
        sys.exit(f"error: {err}")


# How a trained run embeds at test time: set on the command line, these override the run's config
# in every program that loads a trained run (evaluate, report, explain, index, export).
TEST_TIME_FLAGS = tuple(f for f in TEST_TIME_FIELDS if f not in ("protocol", "eval_batch_size"))


def present_overrides(names) -> dict:
    """The named flags the user actually set: they override a workdir's saved config."""
    return {name: getattr(FLAGS, name) for name in names if FLAGS[name].present}


def load_run(overridable, stage: int | None = None):
    """The trained run of --workdir, with the `overridable` (test-time) flags the user set.

    A program that loads a trained run uses its data and architecture; a flag that asks for
    other ones (on the command line or in a --flagfile) would be ignored, so it is refused.
    """
    from keras_instance import trained
    run = trained.load_trained(FLAGS.workdir, present_overrides(overridable), stage)
    check_flags_match_run(run.config)
    return run


def check_flags_match_run(config: Config) -> None:
    wanted = _config_from_flags()
    for name in ("data_dir", *RUN_FIELDS):
        if not FLAGS[name].present:
            continue
        mine, theirs = getattr(wanted, name), getattr(config, name)
        if name == "data_dir":
            mine, theirs = os.path.realpath(mine), os.path.realpath(theirs)
        if mine != theirs:
            raise flags.ValidationError(
                f"{flag_text(name, getattr(wanted, name))}: this program uses the run's own "
                f"{flag_text(name, getattr(config, name))} ({config.workdir}/config.json) and "
                "would ignore the flag; drop it (other data or another architecture needs a run "
                "trained with them)")
