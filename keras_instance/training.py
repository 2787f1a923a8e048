"""Two-stage training (METHOD.md, "Optimisation"), resumable, under any tf.distribute strategy.

What a run folder holds, and the rules that keep it loadable, are `run_folder`'s.
"""
from __future__ import annotations

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_instance import (backbones, distribute, feature_cache, prefix_cache, pseudo_labels,
                            run_folder, text, word2vec)
from keras_instance.config import Config
from keras_instance.data import readers
from keras_instance.data.pipeline import TrainingSet, train_dataset
from keras_instance.data.records import split_records
from keras_instance.model import DualPath, build_dual_path
from keras_instance.trainer import InstanceTrainer


stage_dir = run_folder.stage_dir
final_weights_path = run_folder.final_weights_path
latest_weights = run_folder.latest_weights


def prepare_vocabulary(config: Config, train_records, log=print) -> tuple[text.Vocabulary, np.ndarray]:
    """The workdir's vocabulary and its word2vec rows: built once, then always reloaded.

    Both are kept in the run folder (vectors written before the vocabulary, so a vocabulary on
    disk always has them), so a Stage I rerun after a kill before its first backup, or after
    --overwrite, starts from the same word layer as the first attempt.
    """
    vocab_file = run_folder.path(config.workdir, run_folder.VOCAB)
    vectors_file = run_folder.path(config.workdir, run_folder.WORD_VECTORS)
    if os.path.exists(vocab_file):
        vocab = text.Vocabulary.load(vocab_file)
        if os.path.exists(vectors_file):
            matrix = np.load(vectors_file)
            if matrix.shape != (len(vocab), config.word_dim):
                raise ValueError(f"{vectors_file} holds {matrix.shape} word vectors but "
                                 f"{vocab_file} has {len(vocab)} entries of --word_dim="
                                 f"{config.word_dim}: the run folder is damaged; use a new "
                                 "--workdir")
            log(f"vocabulary: {len(vocab)} entries and their word vectors from {config.workdir}")
            return vocab, matrix
        # A run folder from before the vectors were kept: the same seed rebuilds the same ones.
        matrix, _ = _word_vectors(config, text.tokenize_py(
            [c for r in train_records for c in r.captions]), vocab)
        _save_array(vectors_file, matrix)
        log(f"vocabulary: {len(vocab)} entries from {vocab_file}; word vectors rebuilt → "
            f"{vectors_file}")
        return vocab, matrix
    tokenized = text.tokenize_py([c for r in train_records for c in r.captions])
    vocab, matrix, missing = _build_vocabulary(config, tokenized)
    log(f"vocabulary: {len(vocab)} entries ({missing} without word2vec vectors, initialised "
        "from the vectors' mean/std)")
    os.makedirs(config.workdir, exist_ok=True)
    _save_array(vectors_file, matrix)
    tmp = f"{vocab_file}.tmp-{os.getpid()}"
    vocab.save(tmp)
    os.replace(tmp, vocab_file)
    return vocab, matrix


def _word_vector_source(config: Config, tokenized):
    if config.word2vec:
        vectors = word2vec.load_word2vec(config.word2vec)
        allowed = set(vectors.key_to_index) if config.unknown_words == "drop" else None
        return vectors, allowed
    return word2vec.train_word2vec(tokenized, config.word_dim, config.seed,
                                   min_count=config.min_word_count), None


def _build_vocabulary(config: Config, tokenized):
    vectors, allowed = _word_vector_source(config, tokenized)
    vocab = text.Vocabulary.build(tokenized, config.min_word_count,
                                  use_unk=config.unknown_words == "unk", allowed=allowed)
    matrix, missing = word2vec.embedding_matrix(vocab, vectors, config.word_dim, config.seed)
    return vocab, matrix, missing


def _word_vectors(config: Config, tokenized, vocab: text.Vocabulary):
    vectors, _ = _word_vector_source(config, tokenized)
    return word2vec.embedding_matrix(vocab, vectors, config.word_dim, config.seed)


def _save_array(target: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}.npy"
    np.save(tmp, array)
    os.replace(tmp, target)


def load_records(config: Config):
    return readers.read_dataset(config.dataset, config.data_dir)


def build_for_workdir(config: Config, backbone_weights="config") -> DualPath:
    """The model as `meta.json` sized it (evaluation/export: weights come from the checkpoint)."""
    meta = run_folder.read_json(run_folder.path(config.workdir, run_folder.META))
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


def _prepare_data(config: Config, train_records, log, stage: int = 1
                  ) -> tuple[TrainingSet, text.Vocabulary, np.ndarray]:
    """Fix the vocabulary and word vectors, build the training arrays, write meta.json once.

    With `labels="kmeans"` the classes are k-means clusters, computed in Stage I and stored in
    the workdir (`pseudo_labels`), which Stage II reuses.
    """
    vocab, word_matrix = prepare_vocabulary(config, train_records, log)
    if config.labels == "kmeans":
        clusters = pseudo_labels.prepare_kmeans_labels(
            config, [r.image_path for r in train_records], may_compute=stage == 1, log=log)
        data = TrainingSet.from_records(train_records, vocab, config.max_length,
                                        record_classes=clusters,
                                        num_classes=config.num_clusters)
    else:
        data = TrainingSet.from_records(train_records, vocab, config.max_length)
    meta_path = run_folder.path(config.workdir, run_folder.META)
    if not os.path.exists(meta_path):
        run_folder.write_json(meta_path, {
            "num_classes": data.num_classes, "vocab_size": len(vocab),
            "num_train_images": len(data.image_classes),
            "num_train_captions": len(data.caption_classes),
            "data_fingerprint": run_folder.data_fingerprint(train_records)})
    return data, vocab, word_matrix


def image_input(config: Config, stage: int) -> str:
    """What the image branch trains from (model.IMAGE_INPUTS): a frozen backbone's cached pooled
    features, a fine-tuned suffix's cached prefix maps (--finetune_from), or pixels."""
    cached = bool(config.feature_cache)
    if config.backbone_frozen(stage):
        return "image_features" if cached else "image"
    return "image_maps" if cached and config.finetune_from else "image"


def _build_trainer(config: Config, stage: int, data: TrainingSet, vocab_size: int,
                   word_matrix, source: str) -> tuple[DualPath, InstanceTrainer]:
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
    if config.finetune_from:
        dual.split_at(config.finetune_from)
        if not config.backbone_frozen(stage):
            backbones.freeze_prefix(dual.split)
    trainer = InstanceTrainer(
        dual, image_input=source, loss_weights=config.loss_weights_for(stage),
        margin=config.margin, negatives=config.negatives,
        lr_multipliers=config.lr_multipliers, weight_decay=config.weight_decay,
        weight_decay_on=config.weight_decay_on)
    steps = len(data.image_classes) // config.batch_size
    trainer.compile(optimizer=make_optimizer(config, stage, steps),
                    jit_compile=config.jit_compile,
                    steps_per_execution=config.steps_per_execution)
    return dual, trainer


def precision_policy(precision: str | bool) -> str:
    """The Keras dtype policy for --precision (True/False: the older --mixed_precision).

    mixed: float16 on GPUs, bfloat16 on CPUs. auto: mixed where the hardware runs it natively
    (GPUs of compute capability 7.0 or more, CPUs with AMX: `cpu_has_amx`), float32 elsewhere —
    on CPUs without AMX bfloat16 matmuls are emulated and slower (README, training performance).
    """
    precision = {True: "mixed", False: "float32"}.get(precision, precision)
    gpus = tf.config.list_physical_devices("GPU")
    if precision == "auto":
        capable = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                   >= (7, 0) for g in gpus]
        precision = "mixed" if (gpus and all(capable)) or (not gpus and cpu_has_amx()) else \
            "float32"
    if precision == "float32":
        return "float32"
    return "mixed_float16" if gpus else "mixed_bfloat16"


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Intel AMX with bfloat16 tiles (Sapphire Rapids and later): the 'amx_bf16' CPU flag."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


class _DtypePolicy:
    """Builds inside use `policy`; the previous global policy comes back afterwards."""

    def __init__(self, policy: str):
        self.policy = policy

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)


def _dataset(config: Config, stage: int, data: TrainingSet, dual: DualPath, source: str,
             log=print):
    features = maps = None
    views = (data.image_paths, config.image_size, config.cache_views, config.random_flip,
             config.crop_scale, config.seed)
    if dual.split is not None and source != "image":
        # one pass of the frozen prefix serves both stages: Stage I pools its maps
        maps = prefix_cache.prefix_maps(config.feature_cache, config.backbone, dual.split,
                                        *views, log=log)
        if source == "image_features":
            features, maps = prefix_cache.features_from_maps(dual.split, maps, log=log), None
    elif source == "image_features":
        features = feature_cache.cached_features(config.feature_cache, dual.backbone,
                                                 config.backbone, *views)
    ranking = config.loss_weights_for(stage)[0] != 0
    pool = config.negative_pool if config.negatives == "hardest_of_pool" and ranking else 0
    return train_dataset(data, config.batch_size, config.seed + stage,
                         image_size=config.image_size, features=features,
                         flip=config.random_flip, crop_scale=config.crop_scale,
                         shift=config.position_shift, pool_size=pool,
                         random_negatives=config.negatives == "random" and ranking,
                         shards=config.shards, maps=maps)


def _describe(config: Config, stage: int, source: str) -> str:
    if config.backbone_frozen(stage):
        return "frozen" + (" (cached features)" if source == "image_features" else "")
    if config.finetune_from:
        return (f"trainable from {config.finetune_from}" +
                (" (prefix cached)" if source == "image_maps" else " (prefix recomputed)"))
    return "trainable"


def _callbacks(folder: str, extra) -> list:
    return [
        keras.callbacks.BackupAndRestore(os.path.join(folder, "backup"), delete_checkpoint=False),
        keras.callbacks.TensorBoard(os.path.join(folder, "logs"), write_graph=False),
        keras.callbacks.CSVLogger(os.path.join(folder, "log.csv"), append=True),
        *extra,
    ]


def _check_half_batch(config: Config, stage: int, replicas: int) -> None:
    """The authors' ranking layout pairs rows 2j, 2j+1 on each replica: an even local batch."""
    ranking = config.loss_weights_for(stage)[0] != 0
    if ranking and config.negatives != "hardest_in_batch" and config.batch_size % (2 * replicas):
        raise ValueError(f"--negatives={config.negatives} pairs each anchor with the next "
                         f"example, so --batch_size ({config.batch_size}) must split into even "
                         f"halves on each of the {replicas} replica(s): use a multiple of "
                         f"{2 * replicas}")


def train(config: Config, stage: int, strategy: tf.distribute.Strategy | None = None,
          verbose: int | str = "auto", log=print, callbacks=(), overwrite: bool = False) -> dict:
    """Train one stage into `config.workdir`; returns a summary.

    A rerun resumes an interrupted stage ("resuming stage N at epoch E of M") and leaves a
    finished one as it is; settings that contradict the run folder are refused before anything
    is written; `overwrite` trains the stage again (the old one is set aside until the new one
    finishes; retraining Stage I also sets aside the Stage II trained from it).
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    config.validate()
    run_folder.check_workdir(config.workdir)
    strategy = strategy or tf.distribute.get_strategy()
    config = distribute.for_this_worker(config, strategy)  # only the chief writes the workdir
    epochs = sum(e for _, e in config.schedule_for(stage))
    _check_half_batch(config, stage, strategy.num_replicas_in_sync)
    run_folder.check_run(config.workdir, config)
    train_records = split_records(load_records(config), "train")
    if len(train_records) < config.batch_size:
        raise ValueError(f"batch size {config.batch_size} is larger than the "
                         f"{len(train_records)} training images of {config.data_dir}: pass a "
                         "smaller --batch_size")
    run_folder.check_data(config.workdir, run_folder.data_fingerprint(train_records),
                          len(train_records))
    final_path = final_weights_path(config.workdir, stage)
    if stage == 2 and not os.path.exists(final_weights_path(config.workdir, 1)):
        raise FileNotFoundError(f"Stage II starts from Stage I, but "
                                f"{final_weights_path(config.workdir, 1)} does not exist: run "
                                "--stage=1 first")
    state = run_folder.stage_state(config.workdir, config, stage, epochs)
    if overwrite and state != "new":
        run_folder.set_aside(config.workdir, stage, log)
        state = "new"
    if state == "finished":
        log(f"stage {stage} already finished ({epochs} epochs): {final_path}; nothing trained "
            "(--overwrite trains it again)")
        return {"stage": stage, "skipped": True, "weights": final_path}
    if state == "resume":
        log(f"resuming stage {stage} at epoch {run_folder.epochs_done(config.workdir, stage) + 1}"
            f" of {epochs}")
    keras.utils.set_random_seed(config.seed + stage)  # weight init, dropout: reproducible runs
    data, vocab, word_matrix = _prepare_data(config, train_records, log, stage)
    if not os.path.exists(run_folder.path(config.workdir, run_folder.CONFIG)):
        config.save_to(run_folder.path(config.workdir, run_folder.CONFIG))  # the run's identity
    config.save_to(run_folder.stage_config_path(config.workdir, stage))
    source = image_input(config, stage)
    with strategy.scope(), _DtypePolicy(precision_policy(config.precision)):
        dual, trainer = _build_trainer(config, stage, data, len(vocab), word_matrix, source)
    ds = _dataset(config, stage, data, dual, source, log)
    folder = stage_dir(config.workdir, stage)
    log(f"stage {stage}: {len(data.image_classes)} images, {data.num_classes} classes, "
        f"{epochs} epochs × {len(data.image_classes) // config.batch_size} steps, "
        f"{strategy.num_replicas_in_sync} replica(s), backbone {_describe(config, stage, source)}, "
        f"loss weights rank:image:text = {config.loss_weights_for(stage)}, "
        f"dtype policy {trainer.dtype_policy.name}{', XLA' if config.jit_compile else ''}")
    if verbose == "auto":  # a redirected log gets one line per epoch, not progress-bar escapes
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.time()
    history = trainer.fit(ds, epochs=epochs, callbacks=_callbacks(folder, callbacks),
                          verbose=verbose, shuffle=False)
    seconds = time.time() - start
    tmp = f"{final_path}.tmp-{os.getpid()}.weights.h5"
    dual.full_model().save_weights(tmp)
    os.replace(tmp, final_path)
    summary = {"stage": stage, "epochs": epochs, "seconds": round(seconds, 1), "weights": final_path,
               "final": {k: float(v[-1]) for k, v in history.history.items() if v}}
    run_folder.write_json(os.path.join(folder, "summary.json"), summary)
    config.save_to(run_folder.path(config.workdir, run_folder.CONFIG))
    run_folder.drop_replaced(config.workdir, stage)
    log(f"stage {stage} finished in {seconds:.0f} s → {final_path}")
    return summary
