"""Word importance (the seed's appendix): how much the matching score drops without each word.

The score is the evaluation score: cosine of the test-time image and caption embeddings
(`embeddings.embed_images` / `embed_token_ids`, with the config's flip/shift sums). Removing a
word means dropping its token from the sentence's left-aligned ids (as `tokenizer.token_ids` makes
them, before the cut to max_length) and re-padding, so a word past the cut can move in. A word
outside the vocabulary is not a token at all (the paper's "drop" rule): it is reported as
"not in vocabulary", never given a silent zero. With `unknown_words="unk"` it is the <unk>
token and is removed like any other (and noted as such).
"""
from __future__ import annotations

import collections
import dataclasses
import html
from typing import Iterable, Sequence

import numpy as np

from keras_instance.data.records import split_records
from keras_instance.retrieval import embeddings
from keras_instance.text import tokenizer

NOT_IN_VOCABULARY = "not in vocabulary"
AS_UNK = "not in vocabulary (read as <unk>)"
BEYOND_CUT = "beyond max_length (not seen)"


@dataclasses.dataclass
class WordScore:
    word: str
    drop: float | None         # score(sentence) − score(sentence without this word); None: no token
    note: str = ""


@dataclasses.dataclass
class Explanation:
    sentence: str
    score: float
    words: list[WordScore]


@dataclasses.dataclass
class Sentence:
    """A sentence's words, which of them are tokens, and its uncut left-aligned token ids."""
    words: list[str]
    position: list[int | None]  # per word: index in `ids`, or None (dropped: not in vocabulary)
    ids: list[int]              # kept token ids, not cut to max_length
    unk: list[bool]             # per word: read as <unk>


def encode_sentences(sentences: Sequence[str], vocab: tokenizer.Vocabulary) -> list[Sentence]:
    """Words and uncut ids of each sentence, via the project's tokenizer and `token_ids`."""
    tokenized = tokenizer.tokenize_py(list(sentences))
    longest = max([len(w) for w in tokenized] + [1])
    ids = tokenizer.encode_captions(list(sentences), vocab, longest)  # token_ids, nothing cut
    out = []
    for row, words in zip(ids, tokenized):
        position, kept, unk = [], [], []
        for w in words:
            i = vocab.index.get(w, -1)
            if i < vocab.first_word_id:  # the specials are not words
                i = 1 if vocab.use_unk else -1
            unk.append(vocab.use_unk and i == 1)
            if i < 0:
                position.append(None)
            else:
                position.append(len(kept))
                kept.append(i)
        if list(row[:len(kept)]) != kept or row[len(kept):].any():
            raise RuntimeError(f"word/token mismatch for {words!r}: {kept} vs {row.tolist()}")
        out.append(Sentence(words, position, kept, unk))
    return out


def pad(ids: Sequence[int], max_length: int) -> np.ndarray:
    """Left-aligned ids cut to max_length and zero-padded (the model's input row)."""
    row = np.full(max_length, tokenizer.PAD_ID, np.int32)
    ids = list(ids)[:max_length]
    row[:len(ids)] = ids
    return row


def removal_variants(ids: Sequence[int], max_length: int) -> np.ndarray:
    """[1 + n, L]: row 0 the sentence, row 1 + p the sentence without kept token p."""
    ids = list(ids)
    rows = [pad(ids, max_length)] + [pad(ids[:p] + ids[p + 1:], max_length)
                                     for p in range(len(ids))]
    return np.stack(rows)


def _variant_scores(config, dual, sentences: list[Sentence],
                    image_emb: np.ndarray) -> list[np.ndarray]:
    """Per sentence: scores of its removal variants against its image embedding (row i)."""
    blocks = [removal_variants(s.ids, config.data.max_length) for s in sentences]
    emb = embeddings.config_token_embeddings(config, dual, np.concatenate(blocks))
    owner = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
    scores = np.sum(emb * image_emb[owner], axis=1)
    return np.split(scores, np.cumsum([len(b) for b in blocks])[:-1])


def _word_scores(sentence: Sentence, scores: np.ndarray, max_length: int) -> list[WordScore]:
    out = []
    for word, p, unk in zip(sentence.words, sentence.position, sentence.unk):
        if p is None:
            out.append(WordScore(word, None, NOT_IN_VOCABULARY))
            continue
        note = BEYOND_CUT if p >= max_length else (AS_UNK if unk else "")
        out.append(WordScore(word, float(scores[0] - scores[1 + p]), note))
    return out


def explain(config, dual, vocab: tokenizer.Vocabulary, image_path: str,
            sentence: str) -> Explanation:
    """Score of (image, sentence) and each word's drop in score when it is removed."""
    image_emb = embeddings.config_image_embeddings(config, dual, [image_path], batch_size=1)
    encoded = encode_sentences([sentence], vocab)[0]
    scores = _variant_scores(config, dual, [encoded], image_emb)[0]
    return Explanation(sentence, float(scores[0]),
                       _word_scores(encoded, scores, config.data.max_length))


def split_word_drops(config, dual, vocab: tokenizer.Vocabulary, records, split: str = "test",
                     max_pairs: int = 1000, seed: int = 0) -> list[tuple[str, float]]:
    """(word, drop) of every vocabulary word of up to `max_pairs` sampled matching pairs."""
    chosen = split_records(records, split)
    if not chosen:
        raise ValueError(f"split {split!r} of {config.data.dataset} has no images")
    pairs = [(i, c) for i, r in enumerate(chosen) for c in r.captions]
    if max_pairs and len(pairs) > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))
        pairs = [pairs[i] for i in pick]
    images = sorted({i for i, _ in pairs})
    image_emb = embeddings.config_image_embeddings(config, dual,
                                                   [chosen[i].image_path for i in images])
    row_of = {img: k for k, img in enumerate(images)}
    encoded = encode_sentences([c for _, c in pairs], vocab)
    scores = _variant_scores(config, dual, encoded, image_emb[[row_of[i] for i, _ in pairs]])
    drops = []
    for sentence, s in zip(encoded, scores):
        drops.extend((w.word, w.drop) for w in _word_scores(sentence, s, config.data.max_length)
                     if w.drop is not None and w.note != BEYOND_CUT)
    return drops


def top_words(word_drops: Iterable[tuple[str, float]], top: int = 20,
              min_count: int = 5) -> list[tuple[str, float, int]]:
    """(word, mean drop, occurrences) of words seen ≥ min_count times, largest mean drop first."""
    total, count = collections.defaultdict(float), collections.Counter()
    for word, drop in word_drops:
        total[word] += drop
        count[word] += 1
    rows = [(w, total[w] / n, n) for w, n in count.items() if n >= min_count]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:top]


# --------------------------------------------------------------------------- output
def format_table(expl: Explanation) -> str:
    lines = [f"sentence: {expl.sentence}", f"score (cosine): {expl.score:.4f}",
             f"{'word':<20}{'drop without it':>16}  note", "-" * 50]
    for w in expl.words:
        drop = f"{w.drop:>16.4f}" if w.drop is not None else f"{'-':>16}"
        lines.append(f"{w.word:<20}{drop}  {w.note}".rstrip())
    return "\n".join(lines)


def format_top_table(rows: list[tuple[str, float, int]], split: str, pairs_note: str = "") -> str:
    lines = [f"words whose removal lowers the score most ({split} split{pairs_note})",
             f"{'word':<20}{'mean drop':>12}{'count':>8}", "-" * 40]
    lines += [f"{w:<20}{d:>12.4f}{n:>8d}" for w, d, n in rows]
    return "\n".join(lines)


def _shade(drop: float | None, scale: float) -> str:
    """Warm for words that support the match (removal lowers the score), cool for the rest."""
    if drop is None:
        return "background: none; border-bottom: 1px dashed #999; color: #777;"
    alpha = min(abs(drop) / scale, 1.0) if scale > 0 else 0.0
    rgb = "220, 80, 30" if drop >= 0 else "40, 100, 220"
    return f"background: rgba({rgb}, {alpha:.2f});"


def explanation_html(expl: Explanation) -> str:
    """HTML snippet: the sentence with words shaded by importance, then the numbers."""
    scale = max([abs(w.drop) for w in expl.words if w.drop is not None] + [0.0])
    spans = []
    for w in expl.words:
        tip = (f"drop {w.drop:+.4f}" if w.drop is not None else "") + (
            f" ({w.note})" if w.note and w.drop is not None else w.note)
        spans.append(f'<span class="ki-word" style="{_shade(w.drop, scale)} padding: 1px 3px; '
                     f'border-radius: 3px;" title="{html.escape(tip)}">'
                     f"{html.escape(w.word)}</span>")
    rows = "".join(
        f"<tr><td>{html.escape(w.word)}</td><td>"
        f"{'' if w.drop is None else f'{w.drop:+.4f}'}</td><td>{html.escape(w.note)}</td></tr>"
        for w in expl.words)
    return (f'<div class="ki-explain"><p>{" ".join(spans)}</p>'
            f"<p>score (cosine): {expl.score:.4f}; shading: score drop when the word is removed "
            f"(warm: the word supports the match, cool: it works against it)</p>"
            f"<table><tr><th>word</th><th>drop</th><th>note</th></tr>{rows}</table></div>\n")


def top_words_html(rows: list[tuple[str, float, int]], split: str) -> str:
    scale = max([abs(d) for _, d, _ in rows] + [0.0])
    body = "".join(f'<tr><td><span style="{_shade(d, scale)} padding: 1px 3px;">'
                   f"{html.escape(w)}</span></td><td>{d:+.4f}</td><td>{n}</td></tr>"
                   for w, d, n in rows)
    return (f'<div class="ki-explain-top"><p>Words whose removal lowers the score most, '
            f"{html.escape(split)} split</p><table><tr><th>word</th><th>mean drop</th>"
            f"<th>count</th></tr>{body}</table></div>\n")
