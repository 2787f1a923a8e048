"""A retrieval report a person can look at: `<workdir>/report/index.html`, self-contained.

For sampled test captions: the query and its top-5 images (thumbnails, scores, the right image
marked); for sampled test images: the top-5 captions (the right ones marked); recall@K curves for
both directions (K = 1..50) and the training curves from each stage's log.csv. Thumbnails (small
JPEGs) and plots are embedded as base64 data URIs, so index.html alone opens anywhere (mailed,
copied out of the run folder); the plots are also saved beside it as PNGs for reuse. Ranking ties
follow retrieval/metrics.py: lower gallery index first.
"""
from __future__ import annotations

import base64
import html
import io
import os
import shutil

import numpy as np

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.reports.plots import plot_recall_curves, plot_training_curves
from keras_instance.retrieval import metrics
from keras_instance.retrieval.metrics import ranked, recall_curve
from keras_instance.retrieval.split_embeddings import SplitEmbeddings, embed_split
from keras_instance.text import tokenizer

TOP = 5
MAX_K = 50
THUMB_SIZE = 128


# --------------------------------------------------------------------------- files
def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class Thumbnails:
    """Small JPEG data URIs of gallery images, each made once per report (an image may show up
    in many rows)."""

    def __init__(self, size: int = THUMB_SIZE):
        self.size = size
        self._made: dict[int, str] = {}

    def __call__(self, src: str, index: int) -> str:
        if index not in self._made:
            from PIL import Image
            with Image.open(src) as im:
                im = im.convert("RGB")
                im.thumbnail((self.size, self.size))
                buffer = io.BytesIO()
                im.save(buffer, "JPEG", quality=85)
            self._made[index] = data_uri(buffer.getvalue(), "image/jpeg")
        return self._made[index]


def _png_uri(path: str) -> str:
    with open(path, "rb") as f:
        return data_uri(f.read(), "image/png")


# --------------------------------------------------------------------------- HTML
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.2em; }
td, th { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
.thumb { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
         border: 3px solid transparent; display: block; }
.right .thumb { border-color: #1a7f37; }
td.right, tr.right td { background: #dcfce7; }
.mark { color: #1a7f37; font-weight: bold; }
.score { font-size: 0.85em; color: #555; }
.query { max-width: 22em; }
pre { background: #f6f6f6; padding: 0.6em; display: inline-block; }
"""

# After load: how many <img> decoded (naturalWidth > 0), readable with `chromium --dump-dom`.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.imagesTotal = imgs.length;
});
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _image_cell(uri: str, label: str, score: float | None, right: bool, note: str = "") -> str:
    mark = '<span class="mark" data-right="1">&#10003; right image</span><br>' if right else ""
    score_txt = f'<span class="score">score {score:.3f}</span>' if score is not None else ""
    return (f'<td class="{"right" if right else ""}">{note}<img class="thumb" src="{_esc(uri)}" '
            f'alt="{_esc(label)}" title="{_esc(label)}">{mark}{score_txt}</td>')


def _query_hits(gallery: np.ndarray, query: np.ndarray, gallery_labels: np.ndarray,
                query_label, top: int):
    """One query against a gallery: scores, the top indices, the right-answer mask, and the rank
    of the first right answer (the evaluation's tie rule)."""
    scores = gallery @ query
    right = gallery_labels == query_label
    return scores, ranked(scores, top), right, int(metrics.first_hit_ranks(scores[None],
                                                                             right[None])[0])


def text_query_rows(emb: SplitEmbeddings, queries, thumbs: Thumbnails, top: int = TOP) -> str:
    rows = []
    for q in queries:
        scores, best, right, rank = _query_hits(emb.image_emb, emb.text_emb[q], emb.image_labels,
                                                emb.text_labels[q], top)
        cells = [_image_cell(thumbs(emb.records[g].image_path, g),
                             emb.records[g].image_id, float(scores[g]), bool(right[g]))
                 for g in best]
        own = int(emb.caption_image[q])
        cells.append(_image_cell(thumbs(emb.records[own].image_path, own),
                                 emb.records[own].image_id, float(scores[own]), False))
        rows.append(f'<tr data-rank="{rank}"><td class="query">{_esc(emb.captions[q])}'
                    f'<br><span class="score">right image at rank {rank}</span></td>'
                    + "".join(cells) + "</tr>")
    head = ("<tr><th>query caption</th>" + "".join(f"<th>#{i + 1}</th>" for i in range(top))
            + "<th>its image</th></tr>")
    return f'<table id="text-query-table">{head}{"".join(rows)}</table>'


def image_query_rows(emb: SplitEmbeddings, queries, thumbs: Thumbnails, top: int = TOP) -> str:
    rows = []
    for q in queries:
        scores, best, right, rank = _query_hits(emb.text_emb, emb.image_emb[q], emb.text_labels,
                                                emb.image_labels[q], top)
        thumb = thumbs(emb.records[q].image_path, q)
        items = []
        for g in best:
            mark = '<span class="mark" data-right="1">&#10003;</span> ' if right[g] else ""
            items.append(f'<tr class="{"right" if right[g] else ""}"><td>{mark}'
                         f'{_esc(emb.captions[g])}</td><td class="score">{scores[g]:.3f}</td></tr>')
        rows.append(f'<tr data-rank="{rank}"><td><img class="thumb" src="{_esc(thumb)}" '
                    f'alt="{_esc(emb.records[q].image_id)}" '
                    f'title="{_esc(emb.records[q].image_id)}">'
                    f'<span class="score">first right caption at rank {rank}</span></td>'
                    f'<td><table class="captions">{"".join(items)}</table></td></tr>')
    return ('<table id="image-query-table"><tr><th>query image</th><th>top-5 captions '
            f'(&#10003; = one of its own)</th></tr>{"".join(rows)}</table>')


def write_report(config: Config, dual, vocab: tokenizer.Vocabulary, records, split: str = "test",
                 out_dir: str | None = None, num_queries: int = 10, seed: int = 0,
                 title: str = "", log=print) -> str:
    """Write the report folder; returns the path of its index.html (self-contained)."""
    out_dir = out_dir or run_folder.path(config.workdir, run_folder.REPORT)
    os.makedirs(out_dir, exist_ok=True)
    # Earlier reports kept thumbnails in report/thumbs/: stale now, and no longer read.
    shutil.rmtree(os.path.join(out_dir, "thumbs"), ignore_errors=True)
    thumbs = Thumbnails()
    emb = embed_split(config, dual, vocab, records, split)
    log(f"report: {len(emb.records)} images, {len(emb.captions)} captions of the {split} split")
    result = metrics.evaluate_protocol(config.test.protocol, emb.image_emb, emb.text_emb,
                                         emb.image_labels, emb.text_labels)
    scores = emb.text_emb @ emb.image_emb.T   # [M captions, N images]
    curves = {"text→image": recall_curve(metrics.first_hit_ranks_by_label(
        scores, emb.text_labels, emb.image_labels), min(MAX_K, len(emb.records)))}
    if config.test.protocol != "cuhk":  # CUHK-PEDES has text queries only
        curves["image→text"] = recall_curve(metrics.first_hit_ranks_by_label(
            scores.T, emb.image_labels, emb.text_labels), min(MAX_K, len(emb.captions)))
    recall_png = _png_uri(plot_recall_curves(curves, os.path.join(out_dir, "recall_curves.png")))
    logs = run_folder.read_training_logs(config.workdir)
    training_png = _png_uri(plot_training_curves(
        logs, os.path.join(out_dir, "training_curves.png"))) if logs else None

    rng = np.random.default_rng(seed)
    text_queries = np.sort(rng.choice(len(emb.captions), min(num_queries, len(emb.captions)),
                                      replace=False))
    image_queries = np.sort(rng.choice(len(emb.records), min(num_queries, len(emb.records)),
                                       replace=False))
    curve_rows = "".join(
        f"<tr><td>{_esc(name)}</td>" + "".join(
            f"<td>{c[k - 1]:.1f}</td>" if k <= len(c) else "<td>&ndash;</td>"
            for k in (1, 5, 10, 50)) + "</tr>"
        for name, c in curves.items())
    training = (f'<img id="training-curves" src="{training_png}" alt="training curves">'
                if logs else "<p>No training logs (stage*/log.csv) in the workdir.</p>")
    body = f"""
<h1>Retrieval report: {_esc(config.data.dataset)} {_esc(split)} split</h1>
<p>{_esc(title)}</p>
<section id="summary"><h2>Recall</h2>
<pre>{_esc(metrics.format_table(result))}</pre></section>
<section id="text-queries"><h2>Text → image: {len(text_queries)} sampled captions</h2>
<p>Top-{TOP} images of the {len(emb.records)} test images; green = the caption's own image.</p>
{text_query_rows(emb, text_queries, thumbs)}</section>
<section id="image-queries"><h2>Image → text: {len(image_queries)} sampled images</h2>
<p>Top-{TOP} captions of the {len(emb.captions)} test captions.</p>
{image_query_rows(emb, image_queries, thumbs)}</section>
<section id="recall-curves"><h2>Recall@K, K = 1..{max(len(c) for c in curves.values())}</h2>
<img id="recall-curve-plot" src="{recall_png}" alt="recall curves">
<table id="recall-table"><tr><th>direction</th><th>R@1</th><th>R@5</th><th>R@10</th>
<th>R@50</th></tr>{curve_rows}</table></section>
<section id="training-curves-section"><h2>Training curves</h2>{training}</section>
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>keras-instance report: {_esc(config.data.dataset)} {_esc(split)}</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head>"
            f"<body>{body}</body></html>\n")
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
