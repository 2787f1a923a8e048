"""Two-stage training (docs/method.md, "Optimisation"), resumable, under any tf.distribute strategy.

What a run folder holds, and the rules that keep it loadable, are `run_folder`'s.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.data import readers
from keras_instance.data.pipeline import TrainingSet, train_dataset
from keras_instance.data.records import split_records
from keras_instance.model import backbones
from keras_instance.model.dual_path import DualPath, build_dual_path
from keras_instance.run_folder import final_weights_path
from keras_instance.text import tokenizer
from keras_instance.training import (
    distribute,
    feature_cache,
    precision,
    prefix_cache,
    pseudo_labels,
    resume,
)
from keras_instance.training.step import InstanceTrainer
from keras_instance.training.vocabulary import prepare_vocabulary, save_vocabulary


def make_optimizer(config: Config, stage: int, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = config.schedule_for(stage)
    boundaries, total = [], 0
    for _, epochs in schedule[:-1]:
        total += epochs
        boundaries.append(total * steps_per_epoch)
    lr = (keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [r for r, _ in schedule])
          if boundaries else schedule[0][0])
    if config.optim.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.optim.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {config.optim.optimizer!r} (supported: sgd)")


def _prepare_data(config: Config, train_records, log, stage: int = 1
                  ) -> tuple[TrainingSet, tokenizer.Vocabulary, np.ndarray, dict]:
    """The vocabulary, word vectors, training arrays and meta.json's content; nothing written
    (`_keep_run_files` writes them once the stage can start).

    With `labels="kmeans"` the classes are k-means clusters, computed in Stage I and stored in
    the workdir (`pseudo_labels`), which Stage II reuses.
    """
    vocab, word_matrix = prepare_vocabulary(config, train_records, log)
    if config.data.labels == "kmeans":
        clusters = pseudo_labels.prepare_kmeans_labels(
            config, [r.image_path for r in train_records], may_compute=stage == 1, log=log)
        data = TrainingSet.from_records(train_records, vocab, config.data.max_length,
                                        record_classes=clusters,
                                        num_classes=config.data.num_clusters)
    else:
        data = TrainingSet.from_records(train_records, vocab, config.data.max_length)
    meta = {"num_classes": data.num_classes, "vocab_size": len(vocab),
            "num_train_images": len(data.image_classes),
            "num_train_captions": len(data.caption_classes),
            "data_fingerprint": run_folder.data_fingerprint(train_records)}
    return data, vocab, word_matrix, meta


def _keep_run_files(config: Config, stage: int, vocab, word_matrix, meta: dict) -> None:
    """The run's identity, written once the stage's model is built: word vectors, vocabulary,
    meta.json and config.json where missing, and the stage's own config."""
    save_vocabulary(config, vocab, word_matrix)
    meta_path = run_folder.path(config.workdir, run_folder.META)
    if not os.path.exists(meta_path):
        run_folder.write_json(meta_path, meta)
    if not os.path.exists(run_folder.path(config.workdir, run_folder.CONFIG)):
        config.save_to(run_folder.path(config.workdir, run_folder.CONFIG))
    config.save_to(run_folder.stage_config_path(config.workdir, stage))


def image_input(config: Config, stage: int) -> str:
    """What the image branch trains from (model.IMAGE_INPUTS): a frozen backbone's cached pooled
    features, a fine-tuned suffix's cached prefix maps (--finetune_from), or pixels."""
    cached = bool(config.image.feature_cache)
    if config.backbone_frozen(stage):
        return "image_features" if cached else "image"
    return "image_maps" if cached and config.image.finetune_from else "image"


def _build_trainer(config: Config, stage: int, data: TrainingSet, vocab_size: int,
                   word_matrix, source: str, log=print) -> tuple[DualPath, InstanceTrainer]:
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
    if config.image.finetune_from:
        dual.split_at(config.image.finetune_from)
        if not config.backbone_frozen(stage):
            backbones.freeze_prefix(dual.split)
    trainer = InstanceTrainer(
        dual, image_input=source, loss_weights=config.loss_weights_for(stage),
        margin=config.loss.margin, negatives=config.loss.negatives,
        lr_multipliers=config.optim.lr_multipliers, weight_decay=config.optim.weight_decay,
        weight_decay_on=config.optim.weight_decay_on, pool_excludes=config.loss.pool_excludes,
        negative_image=config.loss.negative_image)
    steps = len(data.image_classes) // config.optim.batch_size
    trainer.compile(optimizer=make_optimizer(config, stage, steps),
                    jit_compile=config.optim.jit_compile,
                    steps_per_execution=steps_per_execution(config, steps, log))
    return dual, trainer


def steps_per_execution(config: Config, steps: int, log=print) -> int:
    """--steps_per_execution, or the largest count below it that divides an epoch's steps: one
    input stream serves every epoch (so a resumed run sees the same batches), and a compiled
    call that ran past an epoch's end would train on the next epoch's first batches."""
    wanted = config.optim.steps_per_execution
    chosen = max(d for d in range(1, min(wanted, steps) + 1) if steps % d == 0)
    if chosen != wanted:
        log(f"--steps_per_execution={wanted} runs as {chosen}: it must divide the {steps} "
            "steps of an epoch (choose --batch_size so that it does)")
    return chosen


def _dataset(config: Config, stage: int, data: TrainingSet, dual: DualPath, source: str,
             log=print, epochs: int = 1, first_epoch: int = 0):
    features = maps = None
    image = config.image
    views = (data.image_paths, image.image_size, image.cache_views, image.random_flip,
             image.crop_scale, config.seed)
    rules = dict(crop_rule=image.crop_rule, resize_method=image.resize_method)
    if dual.split is not None and source != "image":
        # one pass of the frozen prefix serves both stages: Stage I pools its maps
        maps = prefix_cache.prefix_maps(image.feature_cache, image.backbone, dual.split, *views,
                                        log=log, **rules)
        if source == "image_features":
            features, maps = prefix_cache.features_from_maps(dual.split, maps, log=log), None
    elif source == "image_features":
        features = feature_cache.cached_features(config.image.feature_cache, dual.backbone,
                                                 config.image.backbone, *views, log=log,
                                                 square=image.squash_to, **rules)
    ranking = config.loss_weights_for(stage)[0] != 0
    loss = config.loss
    pool = loss.negative_pool if loss.negatives == "hardest_of_pool" and ranking else 0
    return train_dataset(data, config.optim.batch_size, config.seed + stage,
                         image_size=config.image.image_size, features=features,
                         flip=config.image.random_flip, crop_scale=config.image.crop_scale,
                         shift=config.text.position_shift, pool_size=pool,
                         random_negatives=config.loss.negatives == "random" and ranking,
                         shards=config.data.shards, maps=maps, epochs=epochs,
                         first_epoch=first_epoch, square=image.squash_to, **rules)


def _describe(config: Config, stage: int, source: str) -> str:
    if config.backbone_frozen(stage):
        return "frozen" + (" (cached features)" if source == "image_features" else "")
    if config.image.finetune_from:
        return (f"trainable from {config.image.finetune_from}" +
                (" (prefix cached)" if source == "image_maps" else " (prefix recomputed)"))
    return "trainable"


def _callbacks(workdir: str, stage: int, extra, log) -> list:
    """The epoch log, then the backup (`training.resume`: that order, so a kill between them
    only retrains an epoch), TensorBoard, then the caller's."""
    backup = run_folder.backup_dir(workdir, stage)
    return [
        resume.EpochLog(run_folder.stage_file(workdir, stage, run_folder.LOG_CSV), backup),
        resume.StageBackup(backup, log),
        keras.callbacks.TensorBoard(run_folder.logs_dir(workdir, stage), write_graph=False),
        *extra,
    ]


def _check_half_batch(config: Config, stage: int, replicas: int) -> None:
    """The authors' ranking layout pairs rows 2j, 2j+1 on each replica: an even local batch."""
    ranking = config.loss_weights_for(stage)[0] != 0
    negatives, batch = config.loss.negatives, config.optim.batch_size
    if ranking and negatives != "hardest_in_batch" and batch % (2 * replicas):
        raise ValueError(f"--negatives={negatives} pairs each anchor with the next "
                         f"example, so --batch_size ({batch}) must split into even "
                         f"halves on each of the {replicas} replica(s): use a multiple of "
                         f"{2 * replicas}")


def check_config(config: Config) -> None:
    """`Config.validate` plus what the registries know: a known backbone and dataset, and a
    backbone with per-window features for the keep_aspect test geometry; and --squash_to only
    where every cache it feeds keys on it."""
    config.validate()
    readers.reader(config.data.dataset)
    kind = backbones.spec(config.image.backbone)
    if config.test.test_geometry == "keep_aspect" and not kind.has_windows:
        raise ValueError(f"backbone {config.image.backbone} flattens a fixed-size map, so it has "
                         "no per-window features for --test_geometry=keep_aspect: pass "
                         "--test_geometry=squash")
    i = config.image
    if i.squash_to and i.finetune_from and i.feature_cache:
        raise ValueError(f"--squash_to={i.squash_to} with --finetune_from and --feature_cache: "
                         "the prefix cache's key does not hold the squash yet, so a cache of "
                         "unsquashed maps could be reused; drop --feature_cache (the prefix "
                         "then runs every step) or --squash_to")


def train(config: Config, stage: int, strategy: tf.distribute.Strategy | None = None,
          verbose: int | str = "auto", log=print, callbacks=(), overwrite: bool = False) -> dict:
    """Train one stage into `config.workdir`; returns a summary.

    A rerun resumes an interrupted stage ("resuming stage N at epoch E of M") exactly where it
    stopped (`training.resume`) and leaves a finished one as it is; settings that contradict the
    run folder are refused before anything is written, and so is a second command on a run
    folder another one is writing (`run_folder.exclusive`); a start that fails writes nothing;
    `overwrite` trains the stage again (the old one is set aside until the new one finishes;
    retraining Stage I also sets aside the Stage II trained from it).
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    check_config(config)
    run_folder.check_workdir(config.workdir)
    strategy = strategy or tf.distribute.get_strategy()
    config = distribute.for_this_worker(config, strategy)  # only the chief writes the workdir
    created = not os.path.exists(config.workdir)
    try:
        with run_folder.exclusive(config.workdir, log):
            return _train(config, stage, strategy, verbose, log, callbacks, overwrite)
    except BaseException:
        if created and set(os.listdir(config.workdir)) <= {run_folder.LOCK}:
            shutil.rmtree(config.workdir, ignore_errors=True)  # a failed start leaves nothing
        raise


def _train(config: Config, stage: int, strategy, verbose, log, callbacks, overwrite) -> dict:
    epochs = sum(e for _, e in config.schedule_for(stage))
    _check_half_batch(config, stage, strategy.num_replicas_in_sync)
    run_folder.check_run(config.workdir, config)
    train_records = split_records(readers.load(config.data), "train")
    if len(train_records) < config.optim.batch_size:
        raise ValueError(f"batch size {config.optim.batch_size} is larger than the "
                         f"{len(train_records)} training images of {config.data.data_dir}: pass a "
                         "smaller --batch_size")
    run_folder.check_data(config.workdir, run_folder.data_fingerprint(train_records),
                          len(train_records))
    final_path = final_weights_path(config.workdir, stage)
    if stage == 2 and not os.path.exists(final_weights_path(config.workdir, 1)):
        raise FileNotFoundError(f"Stage II starts from Stage I, but "
                                f"{final_weights_path(config.workdir, 1)} does not exist: run "
                                "--stage=1 first")
    state = run_folder.stage_state(config.workdir, config, stage, epochs)
    if state == "finished" and not overwrite:
        log(f"stage {stage} already finished ({epochs} epochs): {final_path}; nothing trained "
            "(--overwrite trains it again)")
        return {"stage": stage, "skipped": True, "weights": final_path}
    keras.utils.set_random_seed(config.seed + stage)  # weight init, dropout: reproducible runs
    data, vocab, word_matrix, meta = _prepare_data(config, train_records, log, stage)
    source = image_input(config, stage)
    policy = precision.precision_policy(config.optim.precision)
    with strategy.scope(), precision.DtypePolicy(policy):
        dual, trainer = _build_trainer(config, stage, data, len(vocab), word_matrix, source,
                                       log)
    # the model is built (weights files read): from here on the stage starts
    if overwrite and state != "new":
        run_folder.set_aside(config.workdir, stage, log)
        state = "new"
    first_epoch = run_folder.epochs_done(config.workdir, stage) if state == "resume" else 0
    if state == "resume":
        log(f"resuming stage {stage} at epoch {first_epoch + 1} of {epochs}")
    _keep_run_files(config, stage, vocab, word_matrix, meta)
    ds = _dataset(config, stage, data, dual, source, log, epochs=epochs, first_epoch=first_epoch)
    steps = len(data.image_classes) // config.optim.batch_size
    log(f"stage {stage}: {len(data.image_classes)} images, {data.num_classes} classes, "
        f"{epochs} epochs × {steps} steps, "
        f"{strategy.num_replicas_in_sync} replica(s), backbone {_describe(config, stage, source)}, "
        f"loss weights rank:image:text = {config.loss_weights_for(stage)}, "
        f"dtype policy {trainer.dtype_policy.name}{', XLA' if config.optim.jit_compile else ''}")
    if verbose == "auto":  # a redirected log gets one line per epoch, not progress-bar escapes
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.time()
    history = trainer.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=verbose,
                          callbacks=_callbacks(config.workdir, stage, callbacks, log),
                          shuffle=False)
    seconds = time.time() - start
    tmp = f"{final_path}.tmp-{os.getpid()}.weights.h5"
    dual.full_model().save_weights(tmp)
    os.replace(tmp, final_path)
    summary = {"stage": stage, "epochs": epochs, "seconds": round(seconds, 1),
               "weights": final_path,
               "final": {k: float(v[-1]) for k, v in history.history.items() if v}}
    run_folder.write_json(run_folder.stage_file(config.workdir, stage, run_folder.SUMMARY),
                          summary)
    config.save_to(run_folder.path(config.workdir, run_folder.CONFIG))
    run_folder.drop_replaced(config.workdir, stage)
    log(f"stage {stage} finished in {seconds:.0f} s → {final_path}")
    return summary
