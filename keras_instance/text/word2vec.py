"""word2vec vectors for the first text layer (docs/method.md, "Text branch").

By default a gensim Word2Vec is trained on the training captions (no download needed); a
pretrained file (.bin / .txt in word2vec format, or a gensim .kv) can be given instead, as the
authors used GoogleNews. Words of the vocabulary that the vectors lack are initialised from a
normal distribution with the vectors' own mean and standard deviation (seeded), so they start
on the same scale as known words.
"""
from __future__ import annotations

import logging
import os
import zlib
from typing import Sequence

import numpy as np
from gensim.models import KeyedVectors, Word2Vec

from keras_instance.text.tokenizer import Vocabulary

logging.getLogger("gensim").setLevel(logging.WARNING)  # its per-epoch INFO lines drown the output


def stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with hash(word + seed); Python's str hash changes
    from process to process, so use CRC32: the same vectors in every run and on every worker."""
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(tokenized: Sequence[Sequence[str]], dim: int, seed: int = 0,
                   min_count: int = 1, epochs: int = 10) -> KeyedVectors:
    """Skip-gram vectors from the training captions (one worker thread: reproducible)."""
    model = Word2Vec(sentences=[list(s) for s in tokenized if s], vector_size=dim, window=5,
                     min_count=min_count, sg=1, workers=1, seed=seed, epochs=epochs,
                     hashfxn=stable_hash)
    return model.wv


def load_word2vec(path: str) -> KeyedVectors:
    """Pretrained vectors from `path`: .kv (gensim), .bin (binary word2vec) or .txt/.vec (text)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"word2vec file {path!r} does not exist; pass a .bin, .txt or .kv "
                                "file, or leave --word2vec empty to train vectors on the captions")
    try:
        if path.endswith(".kv"):
            return KeyedVectors.load(path)
        return KeyedVectors.load_word2vec_format(path, binary=path.endswith(".bin"))
    except Exception as err:
        raise ValueError(f"could not read word2vec vectors from {path!r}: {err}. Expected gensim "
                         ".kv, binary word2vec .bin, or text word2vec (.txt/.vec: a 'count dim' "
                         "header, then 'word v1 v2 ...' per line)") from err


def embedding_matrix(vocab: Vocabulary, vectors: KeyedVectors, dim: int, seed: int = 0
                     ) -> tuple[np.ndarray, int]:
    """[len(vocab), dim] initial weights and the number of vocabulary words the vectors lack."""
    if vectors.vector_size != dim:
        raise ValueError(f"word vectors have {vectors.vector_size} dimensions but word_dim is "
                         f"{dim}; set --word_dim={vectors.vector_size}")
    known = vectors.vectors
    mean, std = float(known.mean()), float(known.std()) or 0.1
    rng = np.random.default_rng(seed)
    matrix = rng.normal(mean, std, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0  # padding row: never used
    missing = 0
    for i, word in enumerate(vocab.words[vocab.first_word_id:], start=vocab.first_word_id):
        if word in vectors.key_to_index:
            matrix[i] = vectors[word]
        else:
            missing += 1
    return matrix, missing
