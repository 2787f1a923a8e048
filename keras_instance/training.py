"""Two-stage training (METHOD.md, "Optimisation"), resumable, under any tf.distribute strategy.

Workdir layout (see WORKSPACE.md):
  config.json, vocab.txt, meta.json         what evaluation and export rebuild the model from
  stage1/, stage2/                          one folder per stage:
    backup/                                 per-epoch state; a rerun resumes from it
    logs/                                   TensorBoard
    log.csv                                 the training curve
    final.weights.h5                        the finished stage (Stage II starts from Stage I's)
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_instance import distribute, feature_cache, pseudo_labels, text, word2vec
from keras_instance.config import Config
from keras_instance.data import readers
from keras_instance.data.pipeline import TrainingSet, train_dataset
from keras_instance.data.records import split_records
from keras_instance.model import DualPath, build_dual_path
from keras_instance.trainer import InstanceTrainer


def stage_dir(workdir: str, stage: int) -> str:
    return os.path.join(workdir, f"stage{stage}")


def final_weights_path(workdir: str, stage: int) -> str:
    return os.path.join(stage_dir(workdir, stage), "final.weights.h5")


def latest_weights(workdir: str, stage: int | None = None) -> tuple[int, str]:
    """(stage, path) of the most advanced finished stage in `workdir`, or of `stage` if given."""
    for candidate in ((stage,) if stage else (2, 1)):
        path = final_weights_path(workdir, candidate)
        if os.path.exists(path):
            return candidate, path
    wanted = f"stage {stage}" if stage else "training stage"
    raise FileNotFoundError(f"no finished {wanted} in {workdir!r} (looked for "
                            f"{final_weights_path(workdir, stage or 1)}); run keras_instance.train "
                            "first")


def prepare_vocabulary(config: Config, train_records, log=print) -> tuple[text.Vocabulary, np.ndarray | None]:
    """The workdir's vocabulary (built once, then reused) and, when new, word2vec init weights."""
    path = text.vocab_path(config.workdir)
    if os.path.exists(path):
        return text.Vocabulary.load(path), None
    tokenized = text.tokenize_py([c for r in train_records for c in r.captions])
    if config.word2vec:
        vectors = word2vec.load_word2vec(config.word2vec)
        allowed = set(vectors.key_to_index) if config.unknown_words == "drop" else None
    else:
        vectors = word2vec.train_word2vec(tokenized, config.word_dim, config.seed,
                                          min_count=config.min_word_count)
        allowed = None
    vocab = text.Vocabulary.build(tokenized, config.min_word_count,
                                  use_unk=config.unknown_words == "unk", allowed=allowed)
    matrix, missing = word2vec.embedding_matrix(vocab, vectors, config.word_dim, config.seed)
    log(f"vocabulary: {len(vocab)} entries ({missing} without word2vec vectors, initialised "
        "from the vectors' mean/std)")
    os.makedirs(config.workdir, exist_ok=True)
    vocab.save(path)
    return vocab, matrix


def load_records(config: Config):
    return readers.read_dataset(config.dataset, config.data_dir)


def build_for_workdir(config: Config, backbone_weights="config") -> DualPath:
    """The model as `meta.json` sized it (evaluation/export: weights come from the checkpoint)."""
    with open(os.path.join(config.workdir, "meta.json")) as f:
        meta = json.load(f)
    return build_dual_path(config, meta["num_classes"], meta["vocab_size"], backbone_weights)


def make_optimizer(config: Config, stage: int, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = config.schedule_for(stage)
    boundaries, total = [], 0
    for _, epochs in schedule[:-1]:
        total += epochs
        boundaries.append(total * steps_per_epoch)
    lr = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [r for r, _ in schedule])
          if boundaries else schedule[0][0])
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r} (supported: sgd)")


def _prepare_data(config: Config, log, stage: int = 1
                  ) -> tuple[TrainingSet, text.Vocabulary, np.ndarray | None]:
    """Read + validate the dataset, fix the vocabulary, write config.json and meta.json.

    With `labels="kmeans"` the classes are k-means clusters, computed in Stage I and stored in
    the workdir (`pseudo_labels`), which Stage II reuses.
    """
    train_records = split_records(load_records(config), "train")
    vocab, word_matrix = prepare_vocabulary(config, train_records, log)
    if config.labels == "kmeans":
        clusters = pseudo_labels.prepare_kmeans_labels(
            config, [r.image_path for r in train_records], may_compute=stage == 1, log=log)
        data = TrainingSet.from_records(train_records, vocab, config.max_length,
                                        record_classes=clusters,
                                        num_classes=config.num_clusters)
    else:
        data = TrainingSet.from_records(train_records, vocab, config.max_length)
    meta_path = os.path.join(config.workdir, "meta.json")
    if stage == 2 and os.path.exists(meta_path):
        with open(meta_path) as f:
            before = json.load(f).get("num_classes")
        if before is not None and before != data.num_classes:
            raise ValueError(f"Stage I was trained with {before} classes but this run has "
                             f"{data.num_classes} (--labels={config.labels}): Stage II must use "
                             "Stage I's --labels/--num_clusters")
    config.save()
    with open(os.path.join(config.workdir, "meta.json"), "w") as f:
        json.dump({"num_classes": data.num_classes, "vocab_size": len(vocab),
                   "num_train_images": len(data.image_classes),
                   "num_train_captions": len(data.caption_classes)}, f, indent=2)
    return data, vocab, word_matrix


def _build_trainer(config: Config, stage: int, data: TrainingSet, vocab_size: int,
                   word_matrix, use_cache: bool) -> tuple[DualPath, InstanceTrainer]:
    """The model for `stage` (Stage II from Stage I's weights) wrapped in a compiled trainer.

    Call inside the strategy's scope so variables are mirrored.
    """
    dual = build_dual_path(config, data.num_classes, vocab_size,
                           backbone_weights="config" if stage == 1 else None)
    if stage == 1 and word_matrix is not None:
        dual.text_encoder.get_layer("word_embedding").embeddings.assign(word_matrix)
    if stage == 2:
        dual.full_model().load_weights(final_weights_path(config.workdir, 1))
    dual.backbone.trainable = not config.backbone_frozen(stage)
    trainer = InstanceTrainer(
        dual, from_features=use_cache, loss_weights=config.loss_weights_for(stage),
        margin=config.margin, negatives=config.negatives,
        lr_multipliers=config.lr_multipliers, weight_decay=config.weight_decay)
    steps = len(data.image_classes) // config.batch_size
    trainer.compile(optimizer=make_optimizer(config, stage, steps),
                    jit_compile=config.jit_compile,
                    steps_per_execution=config.steps_per_execution)
    return dual, trainer


def precision_policy(mixed: bool) -> str:
    """The Keras dtype policy for --mixed_precision: float16 on GPUs, bfloat16 on CPUs."""
    if not mixed:
        return "float32"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


class _DtypePolicy:
    """Builds inside use `policy`; the previous global policy comes back afterwards."""

    def __init__(self, policy: str):
        self.policy = policy

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)


def _dataset(config: Config, stage: int, data: TrainingSet, dual: DualPath, use_cache: bool):
    features = None
    if use_cache:
        features = feature_cache.cached_features(
            config.feature_cache, dual.backbone, config.backbone, data.image_paths,
            config.image_size, config.cache_views, config.random_flip, config.crop_scale,
            config.seed)
    ranking = config.loss_weights_for(stage)[0] != 0
    pool = config.negative_pool if config.negatives == "hardest_of_pool" and ranking else 0
    return train_dataset(data, config.batch_size, config.seed + stage,
                         image_size=config.image_size, features=features,
                         flip=config.random_flip, crop_scale=config.crop_scale,
                         shift=config.position_shift, pool_size=pool, shards=config.shards)


def _callbacks(folder: str, extra) -> list:
    return [
        keras.callbacks.BackupAndRestore(os.path.join(folder, "backup"), delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(folder, "logs"), write_graph=False),
        keras.callbacks.CSVLogger(os.path.join(folder, "log.csv"), append=True),
        *extra,
    ]


def train(config: Config, stage: int, strategy: tf.distribute.Strategy | None = None,
          verbose: int | str = "auto", log=print, callbacks=()) -> dict:
    """Train one stage into `config.workdir`; returns a summary. Rerunning resumes or skips."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    config = distribute.for_this_worker(config, strategy)  # only the chief writes the workdir
    final_path = final_weights_path(config.workdir, stage)
    if os.path.exists(final_path):
        log(f"stage {stage} already finished: {final_path} (delete it to train again)")
        return {"stage": stage, "skipped": True, "weights": final_path}
    stage1 = final_weights_path(config.workdir, 1)
    if stage == 2 and not os.path.exists(stage1):
        raise FileNotFoundError(f"Stage II starts from Stage I, but {stage1} does not exist: "
                                "run --stage=1 first")
    keras.utils.set_random_seed(config.seed + stage)  # weight init, dropout: reproducible runs
    data, vocab, word_matrix = _prepare_data(config, log, stage)
    frozen = config.backbone_frozen(stage)
    use_cache = frozen and bool(config.feature_cache)
    with strategy.scope(), _DtypePolicy(precision_policy(config.mixed_precision)):
        dual, trainer = _build_trainer(config, stage, data, len(vocab), word_matrix, use_cache)
    ds = _dataset(config, stage, data, dual, use_cache)
    epochs = sum(e for _, e in config.schedule_for(stage))
    folder = stage_dir(config.workdir, stage)
    log(f"stage {stage}: {len(data.image_classes)} images, {data.num_classes} classes, "
        f"{epochs} epochs × {len(data.image_classes) // config.batch_size} steps, "
        f"{strategy.num_replicas_in_sync} replica(s), backbone "
        f"{'frozen' + (' (cached features)' if use_cache else '') if frozen else 'trainable'}, "
        f"loss weights rank:image:text = {config.loss_weights_for(stage)}, "
        f"dtype policy {trainer.dtype_policy.name}{', XLA' if config.jit_compile else ''}")
    start = time.time()
    history = trainer.fit(ds, epochs=epochs, callbacks=_callbacks(folder, callbacks),
                          verbose=verbose, shuffle=False)
    seconds = time.time() - start
    dual.full_model().save_weights(final_path)
    summary = {"stage": stage, "epochs": epochs, "seconds": round(seconds, 1), "weights": final_path,
               "final": {k: float(v[-1]) for k, v in history.history.items() if v}}
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(f"stage {stage} finished in {seconds:.0f} s → {final_path}")
    return summary
