"""What lets a killed stage continue as if it had never stopped: the per-epoch backup and the
epoch log.

Keras' BackupAndRestore keeps the model's and optimizer's variables but not the layers' random
seed generators (dropout), so a resumed run drew epoch 1's dropout masks again; and it writes the
weights and the epoch number as two files in place, so a kill between them resumed an epoch off.
`StageBackup` writes one epoch's state (weights with the optimizer's slots and step count, the
seed generators' states) under names of their own, then points the metadata file at them in one
rename: a kill at any moment leaves the previous backup or the new one, never a mix. The input
pipeline draws epoch e's randomness from (seed, e) alone (`data.pipeline.train_dataset`), so
weights, optimizer, random state and data together are the whole state of a run between epochs.

`EpochLog` writes log.csv one row per epoch; a resumed stage first drops rows of epochs it will
train again, so every epoch appears once.
"""
from __future__ import annotations

import csv
import json
import os

import keras
import numpy as np

METADATA = "training_metadata.json"   # {"epoch": E, "weights": …, "seeds": …}; read by run_folder
LEGACY_WEIGHTS = "latest.weights.h5"  # Keras BackupAndRestore's file (older run folders)


def seed_generators(model: keras.Model) -> list:
    """Every SeedGenerator of the model's layers, in a fixed order (their states are saved)."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


def read_metadata(backup_dir: str) -> dict:
    path = os.path.join(backup_dir, METADATA)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


class StageBackup(keras.callbacks.Callback):
    """Per-epoch backup of a stage in `backup_dir`, restored when training begins.

    Sets the model's initial epoch from the backup, as Keras' BackupAndRestore does; the caller
    builds its dataset from the same epoch (`run_folder.epochs_done`).
    """

    def __init__(self, backup_dir: str, log=print):
        super().__init__()
        self.backup_dir = backup_dir
        self.log = log

    def on_train_begin(self, logs=None):
        state = read_metadata(self.backup_dir)
        if not state:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        weights = os.path.join(self.backup_dir, state.get("weights", LEGACY_WEIGHTS))
        self.model.load_weights(weights)
        seeds = state.get("seeds")
        generators = seed_generators(self.model)
        if seeds:
            saved = np.load(os.path.join(self.backup_dir, seeds))
            if len(saved) != len(generators):
                raise ValueError(f"{self.backup_dir} holds {len(saved)} random-generator states "
                                 f"for a model with {len(generators)}: the backup is of another "
                                 "model; use a new --workdir")
            for generator, value in zip(generators, saved):
                generator.state.assign(value.astype(generator.state.dtype))
        elif generators:
            self.log(f"{self.backup_dir}: a backup from before random states were kept; "
                     "dropout draws restart, so this resume differs from an uninterrupted run")
        self.model._initial_epoch = int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        os.makedirs(self.backup_dir, exist_ok=True)
        stem = f"epoch-{done:05d}"
        weights, seeds = f"{stem}.weights.h5", f"{stem}.seeds.npy"
        tmp = os.path.join(self.backup_dir, f".tmp-{os.getpid()}-{stem}")
        self.model.save_weights(tmp + ".weights.h5")
        os.replace(tmp + ".weights.h5", os.path.join(self.backup_dir, weights))
        states = [np.asarray(g.state.numpy()) for g in seed_generators(self.model)]
        np.save(tmp + ".npy", np.stack(states) if states else np.zeros([0, 2], np.int64))
        os.replace(tmp + ".npy", os.path.join(self.backup_dir, seeds))
        with open(tmp + ".json", "w") as f:
            json.dump({"epoch": done, "weights": weights, "seeds": seeds}, f)
        os.replace(tmp + ".json", os.path.join(self.backup_dir, METADATA))  # the switch
        for name in os.listdir(self.backup_dir):  # older epochs, a legacy file, dead temporaries
            if name not in (weights, seeds, METADATA):
                os.remove(os.path.join(self.backup_dir, name))


class EpochLog(keras.callbacks.Callback):
    """log.csv: `epoch` then the metrics, one row per epoch, each epoch once across resumes.

    Listed before `StageBackup`, so an epoch's row is on disk before its backup: a kill between
    the two trains that epoch again, and the rerun drops the row it is about to rewrite.
    """

    def __init__(self, path: str, backup_dir: str):
        super().__init__()
        self.path = path
        self.backup_dir = backup_dir
        self.fields = None

    def on_train_begin(self, logs=None):
        first = int(read_metadata(self.backup_dir).get("epoch", 0))
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.fields = reader.fieldnames
            rows = [r for r in reader if r.get("epoch", "").isdigit() and int(r["epoch"]) < first]
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.fields or ["epoch"])
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.fields is None:
            self.fields = ["epoch", *sorted(logs)]
        new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, restval="NA", extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
            f.flush()
            os.fsync(f.fileno())
