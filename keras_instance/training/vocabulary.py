"""A run's vocabulary and word2vec rows: built once from the training captions, then reloaded.

Both are kept in the run folder (vectors written before the vocabulary, so a vocabulary on disk
always has them): a Stage I rerun after a kill before its first backup, or after --overwrite,
starts from the same word layer as the first attempt.
"""
from __future__ import annotations

import os

import numpy as np

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.text import tokenizer, word2vec


def prepare_vocabulary(config: Config, train_records, log=print) -> tuple[tokenizer.Vocabulary,
                                                                 np.ndarray]:
    """The workdir's vocabulary and its word2vec rows: built once, then always reloaded.

    Nothing is written here: `save_vocabulary` keeps them once the stage is sure to start, so a
    start that fails (a bad weights file, say) leaves the run folder as it was.
    """
    vocab_file = run_folder.path(config.workdir, run_folder.VOCAB)
    vectors_file = run_folder.path(config.workdir, run_folder.WORD_VECTORS)
    if os.path.exists(vocab_file):
        vocab = tokenizer.Vocabulary.load(vocab_file)
        if os.path.exists(vectors_file):
            matrix = np.load(vectors_file)
            if matrix.shape != (len(vocab), config.text.word_dim):
                raise ValueError(f"{vectors_file} holds {matrix.shape} word vectors but "
                                 f"{vocab_file} has {len(vocab)} entries of --word_dim="
                                 f"{config.text.word_dim}: the run folder is damaged; use a new "
                                 "--workdir")
            log(f"vocabulary: {len(vocab)} entries and their word vectors from {config.workdir}")
            return vocab, matrix
        # A run folder from before the vectors were kept: the same seed rebuilds the same ones.
        matrix, _ = _word_vectors(config, tokenizer.tokenize_py(
            [c for r in train_records for c in r.captions]), vocab)
        log(f"vocabulary: {len(vocab)} entries from {vocab_file}; word vectors rebuilt (kept in "
            f"{vectors_file})")
        return vocab, matrix
    tokenized = tokenizer.tokenize_py([c for r in train_records for c in r.captions])
    vocab, matrix, missing = _build_vocabulary(config, tokenized)
    log(f"vocabulary: {len(vocab)} entries ({missing} without word2vec vectors, initialised "
        "from the vectors' mean/std)")
    return vocab, matrix


def save_vocabulary(config: Config, vocab: tokenizer.Vocabulary, matrix: np.ndarray) -> None:
    """Keep what `prepare_vocabulary` returned, where the run folder lacks it: the vectors first,
    so a vocabulary on disk always has them."""
    vocab_file = run_folder.path(config.workdir, run_folder.VOCAB)
    vectors_file = run_folder.path(config.workdir, run_folder.WORD_VECTORS)
    os.makedirs(config.workdir, exist_ok=True)
    if not os.path.exists(vectors_file):
        _save_array(vectors_file, matrix)
    if not os.path.exists(vocab_file):
        tmp = f"{vocab_file}.tmp-{os.getpid()}"
        vocab.save(tmp)
        os.replace(tmp, vocab_file)


def _word_vector_source(config: Config, tokenized):
    if config.data.word2vec:
        vectors = word2vec.load_word2vec(config.data.word2vec)
        allowed = set(vectors.key_to_index) if config.data.unknown_words == "drop" else None
        return vectors, allowed
    return word2vec.train_word2vec(tokenized, config.text.word_dim, config.seed,
                                   min_count=config.data.min_word_count), None


def _build_vocabulary(config: Config, tokenized):
    vectors, allowed = _word_vector_source(config, tokenized)
    vocab = tokenizer.Vocabulary.build(tokenized, config.data.min_word_count,
                                  use_unk=config.data.unknown_words == "unk", allowed=allowed)
    matrix, missing = word2vec.embedding_matrix(vocab, vectors, config.text.word_dim, config.seed)
    return vocab, matrix, missing


def _word_vectors(config: Config, tokenized, vocab: tokenizer.Vocabulary):
    vectors, _ = _word_vector_source(config, tokenized)
    return word2vec.embedding_matrix(vocab, vectors, config.text.word_dim, config.seed)


def _save_array(target: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}.npy"
    np.save(tmp, array)
    os.replace(tmp, target)
