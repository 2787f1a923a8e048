"""A run's evaluation: the full protocol on one split, its JSON file, and results-table rows."""
from __future__ import annotations

import json
import os

import numpy as np

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.data.records import split_records
from keras_instance.model.dual_path import DualPath
from keras_instance.retrieval import metrics
from keras_instance.retrieval.embeddings import config_image_embeddings, config_token_embeddings
from keras_instance.text import tokenizer


def evaluate_split(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, records,
                   split: str = "test", protocol: str | None = None) -> dict:
    """The full protocol on one split of `records`; returns the result dict (recalls in %)."""
    chosen = split_records(records, split)
    if not chosen:
        raise ValueError(f"split {split!r} of {config.data.dataset} has no images")
    image_labels = np.array([r.label for r in chosen])
    captions = [c for r in chosen for c in r.captions]
    text_labels = np.array([r.label for r in chosen for _ in r.captions])
    image_emb = config_image_embeddings(config, dual, [r.image_path for r in chosen])
    tokens = tokenizer.encode_captions(captions, vocab, config.data.max_length)
    text_emb = config_token_embeddings(config, dual, tokens)
    t = config.test
    result = metrics.evaluate_protocol(protocol or t.protocol, image_emb, text_emb,
                                       image_labels, text_labels)
    result["split"] = split
    result["test_feature"] = t.test_feature
    size = config.image.image_size
    result["test_geometry"] = t.test_geometry + (
        f" (short side {config.short_side})" if t.test_geometry == "keep_aspect" else
        f" ({size}x{size})")
    # Captions whose words are all unknown embed as padding alone: worth knowing when reading R@K.
    result["captions_without_known_words"] = int(
        ((tokens != tokenizer.PAD_ID).sum(axis=1) == 0).sum())
    return result


def write_result(result: dict, workdir: str, name: str) -> str:
    """`<workdir>/eval_<name>.json` (name: the split, or <split>_stage<N>)."""
    return run_folder.write_json(run_folder.eval_path(workdir, name), result)


def read_result(workdir: str, split: str, stage: str = "") -> dict:
    name = f"{split}_stage{stage}" if stage else split
    path = run_folder.eval_path(workdir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run python -m keras_instance.cli.evaluate "
                                f"--workdir={workdir} --split={split}"
                                f"{' --stage=' + stage if stage else ''}")
    with open(path) as f:
        return json.load(f)
