"""A finished run folder loaded back: its config, the model with its weights, its vocabulary.

Every program that uses a trained model (evaluate, report, explain, export, index) starts here,
so they all rebuild the model the same way: from `<workdir>/config.json` and `meta.json`, with
the weights of the latest finished stage (or the one asked for).
"""
from __future__ import annotations

import dataclasses

from keras_instance import text, training
from keras_instance.config import Config
from keras_instance.model import DualPath


@dataclasses.dataclass
class TrainedRun:
    config: Config
    dual: DualPath
    vocab: text.Vocabulary
    stage: int
    weights: str

    def describe(self) -> str:
        return f"Stage {self.stage} model ({self.weights})"


def load_trained(workdir: str, overrides: dict | None = None, stage: int | None = None
                 ) -> TrainedRun:
    """Rebuild the model of `workdir`; `overrides` replace config fields (evaluation settings)."""
    # the folder given, not the one saved in config.json: a moved or copied run still loads
    config = dataclasses.replace(Config.load(workdir), workdir=workdir, **(overrides or {}))
    stage, weights = training.latest_weights(config.workdir, stage)
    dual = training.build_for_workdir(config, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = text.Vocabulary.load(text.vocab_path(config.workdir))
    return TrainedRun(config, dual, vocab, stage, weights)
