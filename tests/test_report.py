"""The HTML retrieval report: tiny trained model, report program, page parsed and rendered."""
import base64
import html.parser
import io
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from conftest import run_program
from PIL import Image

from keras_instance.reports import html as report_html
from keras_instance.reports import plots
from keras_instance.retrieval import metrics
from keras_instance.retrieval.split_embeddings import SplitEmbeddings

NUM_QUERIES = 4
SECTIONS = {"summary", "text-queries", "image-queries", "recall-curves", "training-curves-section"}


class Page(html.parser.HTMLParser):
    """What the tests look at: images, section/table ids, right-answer marks per query row."""

    def __init__(self):
        super().__init__()
        self.images, self.ids, self.tables, self.plots = [], set(), [], {}
        self.rows = {"text-query-table": [], "image-query-table": []}
        self._table_stack = []
        self.body = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "body":
            self.body = attrs
        if tag == "img":
            self.images.append(attrs["src"])
            if "id" in attrs:
                self.plots[attrs["id"]] = attrs["src"]
        if tag == "table":
            self._table_stack.append(attrs.get("id"))
            self.tables.append(attrs.get("id"))
        outer = next((t for t in self._table_stack if t in self.rows), None)
        if tag == "tr" and "data-rank" in attrs and outer:
            self.rows[outer].append({"rank": int(attrs["data-rank"]), "marks": 0})
        if attrs.get("data-right") == "1" and outer and self.rows[outer]:
            self.rows[outer][-1]["marks"] += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._table_stack.pop()


@pytest.fixture(scope="module")
def report(trained_run):
    """The report program on the session's trained run (Stage I + II: training curves too)."""
    workdir = trained_run["config"].workdir
    proc = run_program("keras_instance.cli.report", f"--workdir={workdir}", "--split=test",
                       f"--num_queries={NUM_QUERIES}", "--notest_flip_sum")
    index = os.path.join(workdir, "report", "index.html")
    assert proc.stdout.strip().splitlines()[-1] == f"report: {os.path.abspath(index)}"
    return index


def copied_alone(report, folder) -> str:
    """index.html copied by itself to another folder, as a user mails or moves it."""
    os.makedirs(folder)
    return shutil.copy(report, os.path.join(folder, "index.html"))


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    match = re.fullmatch(r"data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:80]
    return match.group(1), base64.b64decode(match.group(2), validate=True)


def test_report_page_is_complete_and_self_contained(report, tmp_path):
    alone = copied_alone(report, str(tmp_path / "elsewhere"))
    page = Page()
    with open(alone, encoding="utf-8") as f:
        text = f.read()
    page.feed(text)
    assert SECTIONS <= page.ids
    assert {"text-query-table", "image-query-table", "recall-table"} <= set(page.tables)
    assert {"recall-curve-plot", "training-curves"} <= page.ids
    # Nothing outside the file: every src/href/url() is a data URI (or a #fragment).
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^"')]*)""",
                            text, flags=re.IGNORECASE)
    for ref in (a or b for a, b in references):
        assert ref.startswith(("data:", "#")), f"index.html refers to {ref[:80]!r}"
    # 4 text queries × (5 results + own image) + 4 query images + 2 plots, all decodable.
    assert len(page.images) == NUM_QUERIES * 6 + NUM_QUERIES + 2
    for src in page.images:
        mime, data = decode_data_uri(src)
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == mime.split("/")[1].upper()
            im.verify()
    mime, data = decode_data_uri(page.plots["recall-curve-plot"])
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size[0] >= 300
    # Text queries: exactly one right image per query (one image per caption), marked iff in top 5.
    rows = page.rows["text-query-table"]
    assert len(rows) == NUM_QUERIES
    for row in rows:
        assert 1 <= row["rank"] <= 12
        assert row["marks"] == (1 if row["rank"] <= 5 else 0)
    # Image queries: up to 5 of its own captions in the top 5, at least one iff its rank ≤ 5.
    rows = page.rows["image-query-table"]
    assert len(rows) == NUM_QUERIES
    for row in rows:
        assert 0 <= row["marks"] <= 5
        assert (row["marks"] > 0) == (row["rank"] <= 5)


def test_captions_are_escaped(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    rec = type("R", (), {"image_path": str(img), "image_id": "a<1>"})()
    unit = np.ones((1, 2), np.float32) / np.sqrt(2)
    emb = SplitEmbeddings(
        [rec], ['<script>alert("x")</script> & <b>bold</b>'], np.array([0]), np.array([7]),
        np.array([7]), unit, unit)
    thumbs = report_html.Thumbnails()
    out = report_html.image_query_rows(emb, [0], thumbs, top=1)
    out += report_html.text_query_rows(emb, [0], thumbs, top=1)
    assert "<script>" not in out and "<b>" not in out and "a<1>" not in out
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in out
    page = Page()
    page.feed(out)
    assert len(page.images) == 3 and len(set(page.images)) == 1  # made once, used thrice
    mime, data = decode_data_uri(page.images[0])
    with Image.open(io.BytesIO(data)) as im:
        assert mime == "image/jpeg" and im.format == "JPEG" and im.size == (40, 30)


def test_recall_curves_at_100_percent_stay_below_the_top_border(tmp_path):
    """A curve at 100 % must not hide under the plot's top frame line: find the frame (the
    topmost long row of black pixels) and the curve's first row in the rendered PNG."""
    path = plots.plot_recall_curves({"text→image": np.full(50, 100.0),
                                           "image→text": np.linspace(20, 60, 50)},
                                          str(tmp_path / "recall.png"))
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    frame_rows = np.flatnonzero(((pixels.sum(axis=2) < 60).sum(axis=1)) > pixels.shape[1] // 2)
    curve_colour = np.array([0x1F, 0x77, 0xB4])  # matplotlib's first colour, C0
    on_curve = np.abs(pixels - curve_colour).sum(axis=2) < 40
    curve_rows = np.flatnonzero(on_curve.sum(axis=1) > 100)  # the flat 100 % line
    assert frame_rows.size, "no plot frame found"
    assert curve_rows.size, "the curve at 100 % is not visible: hidden under the top border"
    assert curve_rows.min() >= frame_rows.min() + 3, (curve_rows.min(), frame_rows.min())


def test_recall_curve_and_tie_order():
    assert np.allclose(metrics.recall_curve(np.array([1, 2, 2, 9]), 3), [25.0, 75.0, 75.0])
    assert metrics.ranked(np.array([0.5, 0.9, 0.5, 0.9]), 4).tolist() == [1, 3, 0, 2]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        why = ("no Chromium to run the browser check: as root, `apt-get install -y "
               "--no-install-recommends chromium` (Debian/Ubuntu; .ci/run does it)")
        if os.environ.get("KERAS_INSTANCE_REQUIRE_BROWSER"):  # CI: a skip would hide it
            pytest.fail(why)
        pytest.skip(why)
    alone = copied_alone(report, str(tmp_path / "elsewhere"))  # the file alone must render
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--dump-dom", "file://" + os.path.abspath(alone)],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = Page()
    page.feed(proc.stdout)
    assert SECTIONS <= page.ids, "the rendered DOM lacks sections"
    assert "text-query-table" in page.tables and "image-query-table" in page.tables
    total = int(page.body.get("data-images-total", -1))
    assert total == len(page.images) > 0, page.body
    assert int(page.body["data-images-loaded"]) == total, "some images did not load"
