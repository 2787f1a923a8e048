"""The encoder an embedding job runs: the served models' own code, from a run folder or an export.

`EncoderSpec` names it (picklable: a Beam worker rebuilds the encoder from it in setup());
`load()` gives an `Encoder` whose `embed` is the served `serving_default` function itself —
`export.served_encoders.image_module(config, dual).serve` / `text_module(...).serve` for a run
folder, the SavedModel's signature for an export — so shard rows equal what TF Serving returns.

The fingerprint (in every shard folder's header) hashes what decides the embedding: the weights
file, vocabulary and test-time settings of a run, or the SavedModel's files. Computing it reads
files only, so a job checks a folder's header before it loads any model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf

KINDS = ("image", "caption")
_NO_EFFECT = ("protocol", "eval_batch_size")  # test-time settings that leave embeddings alone
_MODEL = {"image": "image_encoder", "caption": "text_encoder"}


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A run folder (`workdir`, test-time `overrides`, `stage`) or an export (`export_dir`,
    `version`); `kind` "image" (image encoder) or "caption" (text encoder)."""
    kind: str = "image"
    workdir: str | None = None
    overrides: tuple = ()          # ((flat config name, value), ...)
    stage: int | None = None
    export_dir: str | None = None
    version: int | None = None

    def resolved(self) -> "EncoderSpec":
        """The same encoder with its stage/version fixed (the latest now), so every worker
        loads the same weights even if a newer stage or version appears meanwhile."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.export_dir:
            if self.overrides:
                raise ValueError("test-time settings (" + ", ".join(k for k, _ in self.overrides)
                                 + ") are fixed inside an export; drop them or use --workdir "
                                 "without --export_dir")
            return dataclasses.replace(self, version=self.version or _latest_version(
                os.path.join(self.export_dir, _MODEL[self.kind])))
        if not self.workdir:
            raise ValueError("no encoder: give --workdir (a trained run) or --export_dir")
        from keras_instance import run_folder
        stage, _ = run_folder.latest_weights(self.workdir, self.stage)
        return dataclasses.replace(self, stage=stage)

    def describe(self) -> tuple[dict, str]:
        """(description, fingerprint) of the resolved encoder, from its files alone."""
        digest = hashlib.sha256(self.kind.encode())
        if self.export_dir:
            folder = self.saved_model_dir()
            for root, dirs, files in sorted(os.walk(folder)):
                dirs.sort()
                for name in sorted(files):
                    if "assets.extra" not in root:
                        _hash_file(digest, os.path.join(root, name))
            description = {"source": "export", "saved_model": os.path.abspath(folder),
                           "version": self.version}
        else:
            from keras_instance import run_folder
            from keras_instance.config import TEST_TIME_FIELDS, Config
            config = Config.load(self.workdir).replace(**dict(self.overrides))
            _, weights = run_folder.latest_weights(self.workdir, self.stage)
            settings = {name: config.get(name) for name in TEST_TIME_FIELDS
                        if name not in _NO_EFFECT}
            settings.update(short_side=config.short_side, image_size=config.get("image_size"))
            _hash_file(digest, weights)
            _hash_file(digest, run_folder.path(self.workdir, run_folder.VOCAB))
            digest.update(repr(sorted(settings.items())).encode())
            description = {"source": "run", "workdir": os.path.abspath(self.workdir),
                           "stage": self.stage, "weights": os.path.basename(weights),
                           **{k: _plain(v) for k, v in settings.items()}}
        return description, digest.hexdigest()[:16]

    def saved_model_dir(self) -> str:
        return os.path.join(self.export_dir, _MODEL[self.kind], str(self.version))

    def load(self) -> "Encoder":
        if self.export_dir:
            loaded = tf.saved_model.load(self.saved_model_dir())
            serve = loaded.signatures["serving_default"]
            name = "images" if self.kind == "image" else "sentences"
            dim = int(serve.structured_outputs["embedding"].shape[-1])
            return Encoder(lambda batch: serve(**{name: batch}), dim, "served", loaded)
        from keras_instance import run_folder
        from keras_instance.export import served_encoders
        run = run_folder.load_trained(self.workdir, dict(self.overrides), self.stage)
        module = (served_encoders.image_module(run.config, run.dual) if self.kind == "image"
                  else served_encoders.text_module(run.config, run.dual, run.vocab))
        return Encoder(module.serve, module.embed_dim, run.config.test.test_feature, module)


class Encoder:
    """`embed(inputs)`: image bytes or UTF-8 captions [n] → L2-normalised float32 [n, D]."""

    def __init__(self, serve, dim: int, feature: str, keep_alive=None):
        self.serve, self.dim, self.feature = serve, dim, feature
        self._keep_alive = keep_alive  # the module or SavedModel owning serve's variables

    def embed(self, inputs) -> np.ndarray:
        batch = tf.constant(list(inputs), dtype=tf.string)
        return self.serve(batch)["embedding"].numpy().astype(np.float32)


def _latest_version(model_dir: str) -> int:
    from keras_instance.export.layout import existing_versions
    versions = existing_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"no exported versions in {model_dir}: export the run first "
                                "(python -m keras_instance.cli.export --workdir=… "
                                f"--export_dir={os.path.dirname(model_dir)})")
    return versions[-1]


def _hash_file(digest, path: str) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value
