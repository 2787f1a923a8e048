"""Retrieval metrics for image-text embeddings (pure NumPy).

Ranking rule (deterministic, as in the authors' code): for one query the gallery
is ordered by score DESCENDING, and items with EQUAL scores are ordered by LOWER
gallery index first. The 1-based rank of gallery item g for query q is therefore

    rank(q, g) = 1 + #{h : s[q, h] > s[q, g]} + #{h < g : s[q, h] == s[q, g]}

and the "first-hit rank" of q is the minimum rank over its relevant items. That
minimum is reached by the relevant item with the highest score (lowest index
among equal scores), so only one comparison pass per query is needed.

Scores are processed in blocks of ``chunk`` queries, so a 25,000 x 5,000 score
matrix needs only a few chunk-sized temporaries, never an extra full-size copy.

Metrics: R@K is the percent of queries whose first hit has rank <= K; "medr" is
the smallest K with R@K above 50 %, as the authors' evaluate.m computes it
(`find(CMC>0.5)`: for an even count the upper of the middle two ranks, not their
mean); "meanr" is
the mean; "rsum" is the sum of the six recalls (three per direction).

Protocols (see ``evaluate_protocol``): "1k" (Flickr30k / Flickr8k test),
"coco_5k" (all 5,000 COCO test images), "coco_1k" (five folds of 1,000 COCO
images, every number averaged over folds) and "cuhk" (CUHK-PEDES, text->image
only; a caption hits on ANY image of the same person, which follows from using
person ids as labels).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

PROTOCOLS = ("1k", "coco_1k", "coco_5k", "cuhk")
DEFAULT_KS = (1, 5, 10)
COCO_FOLDS = 5


# --------------------------------------------------------------------------- ranks
def _chunks(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    """Yield [start, stop) query ranges so peak memory stays O(chunk * G)."""
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for start in range(0, n, int(chunk)):
        yield start, min(start + int(chunk), n)


def _block_ranks(scores: np.ndarray, relevant: np.ndarray, offset: int) -> np.ndarray:
    """First-hit ranks for one block of queries; ``offset`` names rows in errors."""
    if relevant.shape != scores.shape:
        raise ValueError(f"relevant block shape {relevant.shape} != scores block {scores.shape}")
    if not np.isfinite(scores).all():
        bad = offset + int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise ValueError(f"scores of query {bad} contain NaN or inf")
    has_hit = relevant.any(axis=1)
    if not has_hit.all():
        missing = offset + np.flatnonzero(~has_hit)
        last = offset + len(scores) - 1
        raise ValueError(f"query {int(missing[0])} has no relevant gallery item "
                         f"({len(missing)} such queries in rows {offset}..{last})")
    # Best relevant item: highest score, lowest index among ties (argmax picks the first).
    best = np.where(relevant, scores, -np.inf).argmax(axis=1)
    top = scores[np.arange(len(scores)), best][:, None]
    higher = np.count_nonzero(scores > top, axis=1)
    earlier = np.arange(scores.shape[1]) < best[:, None]
    earlier_ties = np.count_nonzero((scores == top) & earlier, axis=1)
    return 1 + higher + earlier_ties


def _relevance_getter(relevant, shape: tuple[int, int]) -> Callable[[int, int], np.ndarray]:
    """Normalise the bool-matrix or callable relevance form to a block getter."""
    if callable(relevant):
        return lambda start, stop: np.asarray(relevant(start, stop), dtype=bool)
    relevant = np.asarray(relevant)
    if relevant.dtype != bool:
        raise ValueError(f"relevant must be a bool array, got dtype {relevant.dtype}")
    if relevant.shape != shape:
        raise ValueError(f"relevant shape {relevant.shape} != scores shape {shape}")
    return lambda start, stop: relevant[start:stop]


def _as_scores(scores) -> np.ndarray:
    """Check the [Q, G] layout once, without copying."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be [Q, G] with G >= 1, got shape {scores.shape}")
    return scores


def first_hit_ranks(scores: np.ndarray, relevant, chunk: int = 1024) -> np.ndarray:
    """1-based rank of the first relevant gallery item for every query (tie rule: module doc).

    ``relevant`` is a bool [Q, G] array, or a callable ``relevant(start, stop)``
    returning the bool block for query rows [start, stop) (avoids a full matrix).
    Raises ValueError naming the first query that has no relevant item.
    """
    scores = _as_scores(scores)
    get_block = _relevance_getter(relevant, scores.shape)
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for start, stop in _chunks(scores.shape[0], chunk):
        ranks[start:stop] = _block_ranks(scores[start:stop], get_block(start, stop), start)
    return ranks


def _as_labels(labels, n: int, what: str) -> np.ndarray:
    """1-D labels of the expected length; mismatches are the usual data-prep bug."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{what} must be 1-D of length {n}, got shape {labels.shape}")
    return labels


def first_hit_ranks_by_label(scores, query_labels, gallery_labels, chunk: int = 1024) -> np.ndarray:
    """``first_hit_ranks`` where item g is relevant to query q iff their labels are equal."""
    scores = _as_scores(scores)
    q_lab = _as_labels(query_labels, scores.shape[0], "query_labels")
    g_lab = _as_labels(gallery_labels, scores.shape[1], "gallery_labels")
    return first_hit_ranks(scores, lambda a, b: q_lab[a:b, None] == g_lab[None, :], chunk)


def _embedding_ranks(query_emb, gallery_emb, query_labels, gallery_labels,
                     chunk: int) -> np.ndarray:
    """Label-based first-hit ranks with dot-product scores computed one block at a time."""
    ranks = np.empty(len(query_emb), dtype=np.int64)
    for start, stop in _chunks(len(query_emb), chunk):
        block = query_emb[start:stop] @ gallery_emb.T
        rel = query_labels[start:stop, None] == gallery_labels[None, :]
        ranks[start:stop] = _block_ranks(block, rel, start)
    return ranks


# --------------------------------------------------------------------------- metrics
def recall_summary(ranks: np.ndarray, ks=DEFAULT_KS) -> dict:
    """R@K in percent plus median / mean first-hit rank: the paper's table columns."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if (ranks < 1).any():
        raise ValueError("ranks are 1-based; got a value < 1")
    out = {f"r{k}": 100.0 * float(np.mean(ranks <= k)) for k in ks}
    out["medr"] = float(np.sort(ranks)[ranks.size // 2])  # first K with R@K > 50 %
    out["meanr"] = float(np.mean(ranks))
    return out


def _recall_sum(summary: dict | None) -> float:
    """Sum of the R@K entries of one direction (0 when the direction is absent)."""
    if summary is None:
        return 0.0
    return float(sum(v for k, v in summary.items() if k[0] == "r" and k[1:].isdigit()))


def _prepare(image_emb, text_emb, image_labels, text_labels):
    """Float32 embeddings and labels with consistent shapes."""
    img = np.asarray(image_emb, dtype=np.float32)
    txt = np.asarray(text_emb, dtype=np.float32)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D], got {img.shape} and {txt.shape}")
    if len(img) == 0 or len(txt) == 0:
        raise ValueError("need at least one image and one caption")
    return (img, txt, _as_labels(image_labels, len(img), "image_labels"),
            _as_labels(text_labels, len(txt), "text_labels"))


def evaluate_retrieval(image_emb, text_emb, image_labels, text_labels, chunk: int = 1024) -> dict:
    """Both directions with dot-product scores (embeddings assumed L2-normalised).

    image->text: an image hits on any caption with its label. text->image: a
    caption hits on any image with its label (any image of the same person when
    labels are person ids).
    """
    img, txt, img_lab, txt_lab = _prepare(image_emb, text_emb, image_labels, text_labels)
    i2t = recall_summary(_embedding_ranks(img, txt, img_lab, txt_lab, chunk))
    t2i = recall_summary(_embedding_ranks(txt, img, txt_lab, img_lab, chunk))
    return {"i2t": i2t, "t2i": t2i, "rsum": _recall_sum(i2t) + _recall_sum(t2i),
            "num_images": len(img), "num_captions": len(txt)}


def _evaluate_t2i_only(image_emb, text_emb, image_labels, text_labels, chunk: int = 1024) -> dict:
    """CUHK-PEDES: text queries only; images of people nobody describes are just distractors."""
    img, txt, img_lab, txt_lab = _prepare(image_emb, text_emb, image_labels, text_labels)
    t2i = recall_summary(_embedding_ranks(txt, img, txt_lab, img_lab, chunk))
    return {"i2t": None, "t2i": t2i, "rsum": _recall_sum(t2i),
            "num_images": len(img), "num_captions": len(txt)}


def _average(dicts: list[dict]) -> dict:
    """Mean of every number across folds (COCO 1K reports fold averages)."""
    return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def _coco_1k(image_emb, text_emb, image_labels, text_labels, chunk: int = 1024) -> dict:
    """Five consecutive folds of len(images)//5 images, each with its own captions."""
    img, txt, img_lab, txt_lab = _prepare(image_emb, text_emb, image_labels, text_labels)
    if len(img) % COCO_FOLDS:
        raise ValueError(f"coco_1k needs the image count divisible by {COCO_FOLDS}, got {len(img)}")
    size = len(img) // COCO_FOLDS
    folds, used = [], np.zeros(len(txt), dtype=bool)
    for f in range(COCO_FOLDS):
        sl = slice(f * size, (f + 1) * size)
        cap = np.isin(txt_lab, img_lab[sl])
        used |= cap
        if not cap.any():
            raise ValueError(f"coco_1k fold {f} (images {sl.start}..{sl.stop - 1}) has no captions")
        folds.append(evaluate_retrieval(img[sl], txt[cap], img_lab[sl], txt_lab[cap], chunk))
    if not used.all():
        raise ValueError(f"caption {int(np.flatnonzero(~used)[0])} has a label matching no image")
    return {"i2t": _average([d["i2t"] for d in folds]), "t2i": _average([d["t2i"] for d in folds]),
            "rsum": float(np.mean([d["rsum"] for d in folds])), "num_images": len(img),
            "num_captions": len(txt), "num_folds": COCO_FOLDS, "folds": folds}


def evaluate_protocol(protocol: str, image_emb, text_emb, image_labels, text_labels,
                      chunk: int = 1024) -> dict:
    """Dispatch to one of PROTOCOLS; the result records which one was used."""
    runners = {"1k": evaluate_retrieval, "coco_5k": evaluate_retrieval,
               "coco_1k": _coco_1k, "cuhk": _evaluate_t2i_only}
    if protocol not in runners:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    result = runners[protocol](image_emb, text_emb, image_labels, text_labels, chunk)
    result["protocol"] = protocol
    return result


# --------------------------------------------------------------------------- report
def format_table(result: dict) -> str:
    """Fixed-width recall table in the paper's column order, for logs and the demo."""
    head = f"{'':<12}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'Med r':>8}{'Mean r':>9}"
    lines = [f"protocol: {result.get('protocol', '-')}", head, "-" * len(head)]
    for name, key in (("image→text", "i2t"), ("text→image", "t2i")):
        s = result.get(key)
        if s is None:
            continue
        lines.append(f"{name:<12}{s['r1']:>8.2f}{s['r5']:>8.2f}{s['r10']:>8.2f}"
                     f"{s['medr']:>8.1f}{s['meanr']:>9.2f}")
    lines.append("-" * len(head))
    lines.append(f"rsum: {result['rsum']:.2f}   images: {result['num_images']}   "
                 f"captions: {result['num_captions']}"
                 + (f"   folds: {result['num_folds']}" if "num_folds" in result else ""))
    return "\n".join(lines)


# --- ranking one query, recall curves (the report) ---------------------------------------------

def ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best gallery items: score descending, lower index first among ties."""
    return np.argsort(-scores, kind="stable")[:k]


def recall_curve(ranks: np.ndarray, max_k: int = 50) -> np.ndarray:
    """R@K in percent for K = 1..max_k from first-hit ranks."""
    ranks = np.asarray(ranks)
    return np.array([100.0 * np.mean(ranks <= k) for k in range(1, max_k + 1)])

