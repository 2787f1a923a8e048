"""Caption text: one normaliser/tokeniser shared by training and serving, and the vocabulary.

`tokenize` is the single definition of "what a word is". Training tokenises every caption with it
once (in TensorFlow, so the bytes are handled exactly as in the exported serving graph), and the
serving export puts the very same function into the SavedModel. It uses only old, basic ops
(tensorflow-text's NormalizeUTF8/CaseFoldUTF8 and core string ops), all linked into TF Serving.
"""
from __future__ import annotations

import collections
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD_ID = 0  # position holds no word (Position Shift fills with it)
UNK_TOKEN = "<unk>"

# Characters that separate words. Apostrophes inside words are kept ("man's" stays one token,
# as word2vec vocabularies spell it); all other punctuation becomes a space.
_NON_WORD = r"[^\p{L}\p{N}']+"
_TRAILING_APOSTROPHES = r"'+ "  # applied before _LEADING: each pass keeps the space it matched
_LEADING_APOSTROPHES = r" '+"


def tokenize(sentences: tf.Tensor) -> tf.RaggedTensor:
    """UTF-8 sentences [N] → ragged lower-case word tokens [N, None].

    NFKC-normalise, case-fold (Unicode aware), turn punctuation into spaces, split on spaces.
    Bytes that are not valid UTF-8 are replaced (U+FFFD) rather than failing the whole batch.
    """
    sentences = tf.convert_to_tensor(sentences, dtype=tf.string)
    text = tf.strings.unicode_transcode(sentences, "UTF-8", "UTF-8", errors="replace")
    text = tf_text.normalize_utf8(text, "NFKC")
    text = tf_text.case_fold_utf8(text)
    text = tf.strings.regex_replace(text, _NON_WORD, " ")
    text = tf.strings.regex_replace(" " + text + " ", _TRAILING_APOSTROPHES, " ")
    text = tf.strings.regex_replace(text, _LEADING_APOSTROPHES, " ")
    return tf.strings.split(tf.strings.strip(text))


def tokenize_py(sentences: Sequence[str]) -> list[list[str]]:
    """`tokenize` for Python strings (builds vocabularies and word2vec corpora)."""
    if not sentences:
        return []
    tokens = tokenize(tf.constant(list(sentences))).to_list()
    return [[t.decode("utf-8") for t in row] for row in tokens]


class Vocabulary:
    """Word ↔ id map. Id 0 is padding; with `use_unk`, id 1 is the unknown word.

    Without `use_unk` (the paper's behaviour) unknown words are dropped from sentences.
    """

    def __init__(self, words: Sequence[str], use_unk: bool = False):
        self.use_unk = use_unk
        specials = ["<pad>"] + ([UNK_TOKEN] if use_unk else [])
        self.words = specials + [w for w in words if w not in specials]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def first_word_id(self) -> int:
        return 2 if self.use_unk else 1

    @classmethod
    def build(cls, tokenized: Iterable[Sequence[str]], min_count: int = 1, use_unk: bool = False,
              allowed: set[str] | None = None) -> "Vocabulary":
        """Words seen ≥ `min_count` times (and in `allowed`, e.g. word2vec's words), by
        frequency."""
        counts = collections.Counter(w for sent in tokenized for w in sent)
        kept = [w for w, c in counts.items()
                if c >= min_count and (allowed is None or w in allowed)]
        kept.sort(key=lambda w: (-counts[w], w))
        return cls(kept, use_unk=use_unk)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(("#use_unk\n" if self.use_unk else "#drop_unknown\n"))
            for w in self.words[self.first_word_id:]:
                f.write(w + "\n")

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if not lines or lines[0] not in ("#use_unk", "#drop_unknown"):
            raise ValueError(f"{path}:1: not a keras-instance vocabulary (expected '#use_unk' or "
                             "'#drop_unknown' on the first line); rebuild it by re-running "
                             "training")
        return cls([w for w in lines[1:] if w], use_unk=lines[0] == "#use_unk")

    def lookup_table(self) -> tf.lookup.StaticHashTable:
        """String → id table; unknown words map to 1 (UNK) or -1 (to be dropped)."""
        keys = tf.constant(self.words[self.first_word_id:], dtype=tf.string)
        values = tf.range(self.first_word_id, len(self.words), dtype=tf.int64)
        default = 1 if self.use_unk else -1
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default)


def token_ids(sentences: tf.Tensor, table: tf.lookup.StaticHashTable, max_length: int) -> tf.Tensor:
    """Sentences [N] → int32 ids [N, max_length], words left-aligned, zero-padded.

    Unknown words (id −1) are dropped as in the authors' code; sentences are cut to `max_length`
    kept words. This is the whole text front end, used by training and the serving graph alike.
    """
    words = tokenize(sentences)
    ids = tf.ragged.map_flat_values(table.lookup, words)
    ids = tf.ragged.boolean_mask(ids, ids >= 0)
    ids = ids[:, :max_length]
    return tf.cast(ids.to_tensor(default_value=PAD_ID, shape=[None, max_length]), tf.int32)


def encode_captions(captions: Sequence[str], vocab: Vocabulary, max_length: int,
                    batch_size: int = 4096) -> np.ndarray:
    """Python captions → int32 array [N, max_length] through `token_ids` (the serving path)."""
    table = vocab.lookup_table()
    out = [token_ids(tf.constant(list(captions[i:i + batch_size])), table, max_length).numpy()
           for i in range(0, len(captions), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, max_length), np.int32)

