"""One split's embeddings with who owns each caption: what a report or a page of hits ranks.

Embedded exactly as evaluation embeds (`retrieval/embeddings.py`, the run's test-time settings)."""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_instance.config import Config
from keras_instance.data.records import split_records
from keras_instance.retrieval import embeddings
from keras_instance.text import tokenizer


@dataclasses.dataclass
class SplitEmbeddings:
    """One split's records, caption owners and L2-normalised embeddings; scores = text · image."""
    records: list
    captions: list[str]
    caption_image: np.ndarray   # [M] index of the caption's own image in `records`
    image_labels: np.ndarray    # [N]
    text_labels: np.ndarray     # [M]
    image_emb: np.ndarray       # [N, D]
    text_emb: np.ndarray        # [M, D]


def embed_split(config: Config, dual, vocab: tokenizer.Vocabulary, records,
                split: str) -> SplitEmbeddings:
    """Embed a split exactly as evaluation does (same functions, same test-time settings)."""
    chosen = split_records(records, split)
    if not chosen:
        raise ValueError(f"split {split!r} of {config.data.dataset} has no images")
    captions = [c for r in chosen for c in r.captions]
    caption_image = np.array([i for i, r in enumerate(chosen) for _ in r.captions], np.int64)
    image_emb = embeddings.config_image_embeddings(config, dual, [r.image_path for r in chosen])
    tokens = tokenizer.encode_captions(captions, vocab, config.data.max_length)
    text_emb = embeddings.config_token_embeddings(config, dual, tokens)
    return SplitEmbeddings(chosen, captions, caption_image, np.array([r.label for r in chosen]),
                           np.array([r.label for r in chosen for _ in r.captions]),
                           image_emb, text_emb)

