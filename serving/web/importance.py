"""Per-word importance of a query sentence, as `python -m keras_instance.cli.explain` shades it.

Importance of a word = the drop in the score of the query's top hit when the word is removed:
cosine(sentence, top image) − cosine(sentence without the word, top image), where the image is
the top hit's stored gallery row (`embedding_of`) and the sentences are embedded by the served
text_encoder in ONE batched call (the sentence and each of its one-word-removed variants).
That is `explain`'s measure (keras_instance/reports/word_importance.py) with the top hit as the
image. Words are split on whitespace (the served graph tokenises each variant itself); a word
whose removal leaves the embedding unchanged is one the model does not read (not in its
vocabulary, or past its max length), reported as such rather than as a plain zero.
"""
from __future__ import annotations

import dataclasses

import numpy as np

MAX_WORDS = 60  # the sentence + its variants in one request, within TF Serving's batch of 128
NO_EFFECT = "no effect: a word the model does not read (not in its vocabulary, or too far in)"


@dataclasses.dataclass
class WordImportance:
    word: str
    drop: float
    note: str = ""


def words_of(sentence: str) -> list[str]:
    return sentence.split()


def variants(words: list[str]) -> list[str]:
    """The sentence, then the sentence without word i, for each i."""
    return [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def word_drops(sentence_embeddings: np.ndarray, target: np.ndarray,
               words: list[str]) -> tuple[float, list[WordImportance]]:
    """(score of the sentence, each word's drop) from the embeddings of `variants(words)` and
    the target row (the top hit's gallery embedding)."""
    emb, goal = _unit(sentence_embeddings), _unit(target)
    scores = emb @ goal
    out = []
    for i, word in enumerate(words):
        unchanged = np.allclose(emb[1 + i], emb[0], atol=1e-6)
        out.append(WordImportance(word, 0.0 if unchanged else float(scores[0] - scores[1 + i]),
                                  NO_EFFECT if unchanged else ""))
    return float(scores[0]), out


def explain(client, sentence: str, top_id: str, gallery_model: str | None = None) -> dict:
    """The importance of each word of `sentence` for its top hit `top_id`, and the latency of
    the two calls (text_encoder batched, embedding_of)."""
    words = words_of(sentence)
    shown = words[:MAX_WORDS]
    texts = client.embed_text(variants(shown))
    row = client.embedding_of([top_id], gallery_model)
    score, drops = word_drops(texts.vectors, row.vectors[0], shown)
    return {
        "measure": f"drop in the cosine score of the top hit ({top_id}) when the word is removed",
        "top_id": top_id, "score": score,
        "words": [dataclasses.asdict(w) for w in drops],
        "cut": len(words) - len(shown),
        "elapsed_ms": texts.elapsed_ms + row.elapsed_ms,
        "batch": len(shown) + 1,
    }
