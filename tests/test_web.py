"""The search page (`python -m serving.web`, issue 21): its JSON API against the real index models
of the session's tiny trained run (Flask's test client and real HTTP to the real program), its
refusals (files outside the gallery folder, bad uploads, empty text, a bad k or tag, the model
server down or without a model), and the page itself in headless Chromium driven through
Selenium and chromium-driver (typed and keyboard-submitted queries, a chosen and a dropped photo,
more like this, Tab through every control, messages on the page), with screenshots.

The module fixture copies the trained run's exports, adds index models over the test split (as
`python -m keras_instance.cli.index --gallery=split:test` writes them), serves them with one
stand-in, and starts one `python -m serving.web` on a free port. The tiny model is not
accurate: "the known image first" uses a (caption, image) pair of the test split that the served
model itself ranks first (asked through the client), and every page assertion compares with what
SearchClient answers.

Screenshots go to a temporary folder printed with the test output (`pytest -s` shows it);
KERAS_INSTANCE_WEB_SCREENSHOT=PATH also writes the text-search one there (README's
docs/images/search_page.png is made that way).
"""
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import ROOT, run_program
from PIL import Image

from serving.client import SearchClient
from serving.standin_process import StandinProcess
from serving.web import files, importance
from serving.web.app import create_app

pytestmark = pytest.mark.server
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic", "--window-size=1280,1100"]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    """The trained run's encoders + index models over its test split, served by a stand-in."""
    root = tmp_path_factory.mktemp("web")
    exports = str(root / "exports")
    shutil.copytree(trained_run["exports"], exports)
    # what `python -m keras_instance.cli.index --gallery=split:test --max_k=20` writes (that
    # program: tests/test_index.py), built here without another TensorFlow start-up
    from keras_instance.export import publish
    result = publish.build_index(trained_run["config"], trained_run["dual"], trained_run["vocab"],
                                 exports, "split:test", trained_run["records"], max_k=20,
                                 log=lambda line: None)
    assert result["version"] == 1, result
    standin = StandinProcess(
        [f"--model_config={os.path.join(exports, 'models.config')}", f"--models_root={exports}",
         "--file_system_poll_wait_seconds=0", "--tensorflow_intra_op_parallelism=1",
         "--tensorflow_inter_op_parallelism=1"], str(root / "standin.log"), start_s=300, env=ENV)
    try:
        with SearchClient(standin.address, deadline_s=60) as api:
            yield dict(address=standin.address, api=api, test=trained_run["test"], root=root,
                       gallery_root=trained_run["config"].data.data_dir, standin=standin)
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def http(served):
    """Flask's test client on the app, with a 1 MB upload cap."""
    app = create_app(served["address"], served["gallery_root"], max_upload_mb=1, deadline_s=60)
    return app.test_client()


class WebProcess:
    """`python -m serving.web ... --port=0` as a user starts it; the URL from its first line."""

    def __init__(self, *args, log_path):
        self.log = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.web", "--port=0", *args],
                                     cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        line = self.proc.stdout.readline()
        if "search page on http://" not in line:
            self.stop()
            raise RuntimeError(f"serving.web did not start: {line!r}\n{self.log_tail()}")
        self.url = line.split("search page on ")[1].split()[0].rstrip("/")

    def log_tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def web(served):
    page = WebProcess(f"--server={served['address']}", f"--gallery_root={served['gallery_root']}",
                      "--deadline_s=60", log_path=str(served["root"] / "web.log"))
    try:
        yield page
    finally:
        page.stop()


@pytest.fixture(scope="module")
def dead_web(tmp_path_factory):
    """The page for a model server that is not there (nothing listens on port 1)."""
    page = WebProcess("--server=127.0.0.1:1", "--deadline_s=5",
                      log_path=str(tmp_path_factory.mktemp("dead_web") / "web.log"))
    try:
        yield page
    finally:
        page.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_screenshots")
    print(f"\nsearch page screenshots: {folder}")
    return folder


def _need_browser(why):
    if os.environ.get("KERAS_INSTANCE_REQUIRE_BROWSER"):  # CI: a skip would hide it
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromium-driver (both from Debian: the same version)."""
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser")
                     if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _need_browser("no chromium / chromedriver for the search page's browser tests: as root, "
                      "`apt-get install -y --no-install-recommends chromium chromium-driver` "
                      "(.ci/run does it)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need_browser("selenium is not installed: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def known(served):
    """A test caption whose own image the served model ranks first, and a test image whose top
    caption is one of its own (None where the tiny model has none: then the model's first)."""
    api, test = served["api"], served["test"]
    pairs = [(r, c) for r in test for c in r.captions]
    firsts = api.text_search([c for _, c in pairs], k=1).hits
    text = next(((c, r) for (r, c), hits in zip(pairs, firsts) if hits[0].id == r.image_id), None)
    image = None
    for record in test:
        top = api.image_search(record.image_path, k=1).hits[0][0]
        if top.id.split("#")[0] == record.image_id:
            image = record
            break
    return dict(text=text, image=image)


# ----------------------------------------------------------------------------- helpers

def _ids(hits):
    return [h["id"] if isinstance(h, dict) else h.id for h in hits]


def _png(colour=(200, 30, 30), size=(24, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _upload(http, data, name="photo.png", **form):
    return http.post("/api/image", data={"image": (io.BytesIO(data), name), **form},
                     content_type="multipart/form-data")


def _get(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _message_only(response, status, *phrases):
    """A failure answered as one sentence for a person: the status, JSON, no traceback."""
    assert response.status_code == status, (response.status_code, response.data[:500])
    body = response.get_json()
    assert set(body) <= {"error", "detail"} and body["error"], body
    for phrase in phrases:
        assert phrase in body["error"], (phrase, body)
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]


# ----------------------------------------------------------------------------- no TensorFlow

def test_web_process_never_imports_tensorflow():
    """The app, its command line and a query leave TensorFlow (and Keras) unloaded."""
    script = textwrap.dedent("""
        import sys
        from serving.web import __main__ as program
        from serving.web.app import create_app
        app = create_app("127.0.0.1:1", deadline_s=5).test_client()
        assert app.get("/").status_code == 200
        answer = app.post("/api/text", json={"query": "a red circle"})
        assert answer.status_code == 503, answer.status_code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras",
                                                                       "keras_instance"))
        assert not loaded, loaded[:5]
        print("no tensorflow")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0 and "no tensorflow" in proc.stdout, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- the JSON API

def test_text_search_answers_what_the_client_answers(http, served, known):
    api = served["api"]
    caption = known["text"][0] if known["text"] else served["test"][0].captions[0]
    for k in (3, 7):
        answer = http.post("/api/text", json={"query": caption, "k": k, "tag": ""})
        assert answer.status_code == 200, answer.data
        body = answer.get_json()
        expected = api.text_search(caption, k=k).hits[0]
        assert _ids(body["hits"]) == _ids(expected) and body["k"] == k
        assert np.allclose([h["score"] for h in body["hits"]], [h.score for h in expected],
                           atol=1e-5)
        assert body["elapsed_ms"] > 0 and body["app_ms"] >= body["elapsed_ms"]
        assert body["model"] == "text_to_image" and body["version"] == 1
    if known["text"]:
        assert body["hits"][0]["id"] == known["text"][1].image_id
    by_id = {r.image_id: r for r in served["test"]}
    for hit in body["hits"]:  # each thumbnail is the hit's own file, through the app
        image = http.get(hit["image"])
        assert image.status_code == 200 and image.mimetype.startswith("image/")
        with open(by_id[hit["id"]].image_path, "rb") as f:
            assert image.data == f.read()


def test_word_importance_is_the_drop_in_the_top_hits_score(http, served):
    """One batched text_encoder call: the sentence and each one-word-removed variant; a word
    the model does not read drops nothing and says so."""
    api = served["api"]
    sentence = served["test"][1].captions[0] + " zzqxv"
    top = api.text_search(sentence, k=1).hits[0][0]
    answer = http.post("/api/explain", json={"query": sentence, "top_id": top.id})
    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    words = sentence.split()
    assert [w["word"] for w in body["words"]] == words and body["batch"] == len(words) + 1
    assert abs(body["score"] - top.score) < 1e-4, (body["score"], top.score)
    texts = api.embed_text(importance.variants(words)).vectors
    row = api.embedding_of([top.id]).vectors[0]
    scores = texts @ row / np.linalg.norm(texts, axis=1) / np.linalg.norm(row)
    drops = [w["drop"] for w in body["words"]]
    assert np.allclose(drops[:-1], scores[0] - scores[1:-1], atol=1e-5)
    assert body["words"][-1] == {"word": "zzqxv", "drop": 0.0, "note": importance.NO_EFFECT}
    assert any(abs(d) > 1e-4 for d in drops[:-1]), drops
    assert "top hit" in body["measure"] and body["elapsed_ms"] > 0


def test_photo_search_gives_captions_and_similar_images(http, served, known):
    api = served["api"]
    record = known["image"] or served["test"][0]
    with open(record.image_path, "rb") as f:
        data = f.read()
    answer = _upload(http, data, os.path.basename(record.image_path), k="4", tag="")
    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert _ids(body["captions"]["hits"]) == _ids(api.image_search(data, k=4).hits[0])
    assert all(h["caption"] for h in body["captions"]["hits"])
    if known["image"]:
        assert body["captions"]["hits"][0]["caption"] in record.captions
    vector = api.embed_images([data]).vectors
    assert _ids(body["similar"]["hits"]) == _ids(api.embedding_search(vector, k=4).hits[0])
    assert body["similar"]["model"] == "text_to_image" and body["similar"]["embed_ms"] > 0
    mine = body["similar"]["hits"][0]  # a gallery photo's embedding finds the photo itself
    assert mine["id"] == record.image_id and mine["score"] > 0.99, mine


def test_more_like_this_puts_the_item_first(http, served):
    api = served["api"]
    item = served["test"][2].image_id
    body = http.post("/api/like", json={"id": item, "k": 5}).get_json()
    assert _ids(body["hits"]) == _ids(api.more_like_this(item, k=5).hits[0])
    assert body["hits"][0]["id"] == item and abs(body["hits"][0]["score"] - 1) < 1e-4
    caption = f"{item}#0"
    body = http.post("/api/like", json={"id": caption, "k": 3, "gallery": "captions"}).get_json()
    assert body["hits"][0]["id"] == caption and len(body["hits"]) == 3


def test_bad_queries_get_a_sentence_and_the_app_goes_on(http, served):
    caption = served["test"][0].captions[0]
    info = served["api"].index_info()
    _message_only(http.post("/api/text", json={"query": "   "}), 400, "search box is empty")
    _message_only(http.post("/api/text", json={"query": ""}), 400, "search box is empty")
    _message_only(http.post("/api/text", json={"query": "a " * 600}), 400, "characters long")
    _message_only(http.post("/api/text", data="not json"), 400, "JSON")
    _message_only(http.post("/api/text", json={"query": caption, "k": "ten"}), 400,
                  "whole number")
    _message_only(http.post("/api/text", json={"query": caption, "k": 0}), 400, "at least 1")
    _message_only(http.post("/api/text", json={"query": caption, "k": info["max_k"] + 1}), 400,
                  "refused the query", f"outside the allowed range 1..{info['max_k']}")
    _message_only(http.post("/api/text", json={"query": caption, "tag": "purple"}), 400,
                  "refused the query", "unknown tag")
    _message_only(http.post("/api/like", json={"id": "no-such-image"}), 400, "unknown id")
    _message_only(http.post("/api/explain", json={"query": caption}), 400, "top hit")
    # Uploads: none, empty, not an image, a broken image, over the cap (1 MB here).
    _message_only(http.post("/api/image", data={}, content_type="multipart/form-data"), 400,
                  "no file")
    _message_only(_upload(http, b"", "empty.png"), 400, "empty.png is empty")
    _message_only(_upload(http, b"hello, I am a text file\n", "notes.txt"), 400,
                  "notes.txt is not an image")
    _message_only(_upload(http, _png()[:40], "cut.png"), 400, "refused the query",
                  "truncated PNG")
    _message_only(_upload(http, b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024), "big.png"), 413,
                  "larger than the 1 MB limit")
    _message_only(http.get("/api/nothing-here"), 404)
    assert served["standin"].alive()
    answer = http.post("/api/text", json={"query": caption, "k": 2})
    assert answer.status_code == 200 and len(answer.get_json()["hits"]) == 2
    assert _upload(http, _png(), "red.png", k="2").status_code == 200


def test_server_down_or_model_missing_is_a_message(served):
    down = create_app("127.0.0.1:1", deadline_s=5).test_client()
    error = _message_only(down.post("/api/text", json={"query": "a red circle"}), 503,
                          "cannot be reached", "127.0.0.1:1")
    assert _message_only(_upload(down, _png()), 503) == error
    status = down.get("/api/status")
    assert status.status_code == 200
    assert all("cannot be reached" in m["error"] for m in status.get_json()["models"].values())
    assert down.get("/").status_code == 200  # the page itself is still served
    missing = create_app(served["address"], served["gallery_root"], deadline_s=60,
                         image_model="no_such_model").test_client()
    _message_only(_upload(missing, _png()), 503, "does not serve a model", "no_such_model")
    models = missing.get("/api/status").get_json()["models"]
    assert "no_such_model" in models["captions"]["error"] and models["images"]["info"]["size"]
    assert missing.post("/api/text", json={"query": "a red circle"}).status_code == 200


def test_gallery_images_only_from_below_the_gallery_folder(tmp_path):
    gallery = tmp_path / "gallery"
    (gallery / "photos").mkdir(parents=True)
    (gallery / "photos" / "a.png").write_bytes(_png())
    (gallery / "notes.txt").write_text("not an image")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret bytes")
    os.symlink(secret, gallery / "photos" / "link.png")
    (tmp_path / "gallery2").mkdir()  # a sibling whose name starts like the gallery's
    (tmp_path / "gallery2" / "b.png").write_bytes(b"\x89PNG sibling")
    app = create_app("127.0.0.1:1", str(gallery)).test_client()

    def get(path):
        return app.get("/image?" + urllib.parse.urlencode({"path": path}))

    ok = get("photos/a.png")
    assert ok.status_code == 200 and ok.mimetype == "image/png" and ok.data == _png()
    assert get(str(gallery / "photos" / "a.png")).status_code == 200  # absolute, inside
    refused = ["../secret.png", "photos/../../secret.png", str(secret), "/etc/passwd",
               "photos/link.png", "../gallery2/b.png", "notes.txt", "", ".", "photos",
               "photos/a.png\x00.txt"]
    for path in refused:
        answer = get(path)
        assert answer.status_code == 403, (path, answer.status_code)
        assert b"secret" not in answer.data and b"sibling" not in answer.data
    assert get("photos/missing.png").status_code == 404
    assert files.resolve(str(gallery), "photos/./a.png")[0] == str(gallery / "photos" / "a.png")


# ----------------------------------------------------------------------------- the program

def test_the_program_over_real_http(web, served):
    """`python -m serving.web`: the page, a query, a thumbnail, a raw `../` and an upload over
    the cap through its real server, still running after each."""
    status, page = _get(web.url + "/")
    assert status == 200 and b'id="search-form"' in page
    for asset in ("/static/app.js", "/static/style.css"):
        assert _get(web.url + asset)[0] == 200
    caption = served["test"][0].captions[0]
    status, body = _get(web.url + "/api/text", json.dumps({"query": caption, "k": 2}).encode(),
                        {"Content-Type": "application/json"})
    hits = json.loads(body)["hits"]
    assert status == 200 and len(hits) == 2
    status, data = _get(web.url + hits[0]["image"])
    with open(os.path.join(served["gallery_root"], hits[0]["path"]), "rb") as f:
        assert status == 200 and data == f.read()
    for raw in ("/image?path=../../../../etc/passwd", "/image?path=%2e%2e/%2e%2e/etc/hostname",
                "/image?path=/etc/passwd", "/static/../app.py", "/static/%2e%2e/app.py"):
        status, data = _get(web.url + raw)
        assert status in (403, 404) and b"root:" not in data and b"import" not in data, raw
    boundary = "b0undary"
    big = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\""
           f"\r\nContent-Type: image/png\r\n\r\n").encode() + bytes(9 * 1024 * 1024) + \
        f"\r\n--{boundary}--\r\n".encode()
    status, body = _get(web.url + "/api/image", big,
                        {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 413 and "larger than the 8 MB limit" in json.loads(body)["error"]
    assert web.alive() and _get(web.url + "/api/status")[0] == 200


def test_program_flags():
    proc = run_program("serving.web", "--gallery_root=/no/such/folder", check=False)
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    proc = run_program("serving.web", "--port=70000", check=False)
    assert proc.returncode == 2 and "not a port number" in proc.stderr
    proc = run_program("serving.web", "--help", check=False)
    assert proc.returncode == 0 and "--gallery_root" in proc.stdout


# ----------------------------------------------------------------------------- in Chromium

def _wait_done(driver, before, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(
        lambda d: int(d.find_element("tag name", "body").get_attribute("data-done") or 0)
        > before)


def _done(driver):
    return int(driver.find_element("tag name", "body").get_attribute("data-done") or 0)


def _open(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url + "/")
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element("id", "server-status").text.startswith(("Model server",
                                                                          "The model server")))


def _tiles(driver):
    return driver.find_elements("css selector", "#grid .hit")


def _images_loaded(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid img')].every(i => i.complete && "
        "i.naturalWidth > 0)")


def _shot(driver, folder, name):
    path = os.path.join(folder, name)
    assert driver.save_screenshot(path), path
    with Image.open(path) as im:
        assert im.size[0] >= 800
    return path


def test_page_text_search_keyboard_and_more_like_this(browser, web, served, known, shots):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    api = served["api"]
    _open(browser, web.url)
    assert "text_to_image: 12 images" in browser.find_element("id", "server-status").text
    caption = known["text"][0] if known["text"] else served["test"][0].captions[0]
    expected = api.text_search(caption, k=6).hits[0]
    k_box = browser.find_element("id", "k")
    k_box.clear()
    k_box.send_keys("6")
    before = _done(browser)
    browser.find_element("id", "query").send_keys(caption + Keys.ENTER)  # Enter searches
    _wait_done(browser, before)
    tiles = _tiles(browser)
    assert [t.get_attribute("data-id") for t in tiles] == _ids(expected)
    if known["text"]:  # the caption's own image, first
        assert tiles[0].get_attribute("data-id") == known["text"][1].image_id
    assert f"{expected[0].score:.3f}" in tiles[0].text and expected[0].id in tiles[0].text
    WebDriverWait(browser, 30).until(_images_loaded)
    words = browser.find_elements("css selector", "#words .word")
    assert [w.text for w in words] == caption.split()
    shaded = [w.value_of_css_property("background-color") for w in words]
    assert any(s not in ("rgba(0, 0, 0, 0)", "transparent") for s in shaded), shaded
    latency = browser.find_element("id", "latency").text
    assert "at the model server" in latency and "word importance" in latency, latency
    assert browser.find_element("id", "message").is_displayed() is False
    path = _shot(browser, shots, "text_search.png")
    if os.environ.get("KERAS_INSTANCE_WEB_SCREENSHOT"):
        shutil.copy(path, os.environ["KERAS_INSTANCE_WEB_SCREENSHOT"])

    # Tab from the top of the page reaches every control, the results' buttons included.
    browser.execute_script("window.scrollTo(0, 0)")
    browser.find_element("tag name", "h1").click()  # sequential focus starts at the top
    reached = []
    for _ in range(12):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        reached.append(browser.execute_script(
            "const e = document.activeElement; return e.id || e.className"))
    assert reached[:5] == ["query", "k", "tag", "search-button", "photo"], reached
    assert reached[5:11] == ["like"] * 6, reached
    # Enter on a focused "More like this" button: that item first, at score 1.
    before = _done(browser)
    like_first = api.more_like_this(expected[1].id, k=6).hits[0]
    buttons = browser.find_elements("css selector", "#grid button.like")
    buttons[1].send_keys(Keys.ENTER)
    _wait_done(browser, before)
    tiles = _tiles(browser)
    assert [t.get_attribute("data-id") for t in tiles] == _ids(like_first)
    assert tiles[0].get_attribute("data-id") == expected[1].id and "1.000" in tiles[0].text
    assert browser.find_element("id", "result-title").text == f"More like {expected[1].id}"
    # Clicking a thumbnail is "more like this" too.
    before = _done(browser)
    tiles[2].find_element("tag name", "img").click()
    _wait_done(browser, before)
    assert _tiles(browser)[0].get_attribute("data-id") == like_first[2].id
    _shot(browser, shots, "more_like_this.png")


def test_page_photo_chosen_and_dropped(browser, web, served, known, shots):
    from selenium.webdriver.support.ui import WebDriverWait
    api = served["api"]
    _open(browser, web.url)
    record = known["image"] or served["test"][0]
    expected = api.image_search(record.image_path, k=10).hits[0]
    before = _done(browser)
    browser.find_element("id", "photo").send_keys(os.path.abspath(record.image_path))
    _wait_done(browser, before)
    captions = browser.find_elements("css selector", "#captions .caption-hit")
    assert [c.get_attribute("data-id") for c in captions] == _ids(expected)
    first = captions[0].find_element("class name", "caption-text").text
    assert first == expected[0].caption
    if known["image"]:  # one of the photo's own captions, first
        assert first in record.captions
    similar = api.embedding_search(api.embed_images(record.image_path).vectors, k=10).hits[0]
    assert [t.get_attribute("data-id") for t in _tiles(browser)] == _ids(similar)
    WebDriverWait(browser, 30).until(_images_loaded)
    _shot(browser, shots, "photo_chosen.png")

    # Dropped on the drop zone (a real File in a DataTransfer, as a drag from the desktop gives).
    other = next(r for r in served["test"] if r.image_id != record.image_id)
    expected = api.image_search(other.image_path, k=10).hits[0]
    relative = os.path.relpath(other.image_path, served["gallery_root"])
    before = _done(browser)
    browser.execute_async_script("""
        const [url, name, ready] = arguments;
        fetch(url).then(r => r.blob()).then(blob => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], name, {type: blob.type}));
          const zone = document.getElementById("drop-zone");
          zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true,
                                                        cancelable: true}));
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true,
                                                    cancelable: true}));
          ready();
        });""", "/image?" + urllib.parse.urlencode({"path": relative}), "dropped.png")
    _wait_done(browser, before)
    captions = browser.find_elements("css selector", "#captions .caption-hit")
    assert [c.get_attribute("data-id") for c in captions] == _ids(expected)
    assert "dropped.png" in browser.find_element("id", "caption-title").text
    _shot(browser, shots, "photo_dropped.png")


def test_page_says_what_went_wrong(browser, web, dead_web, tmp_path, shots):
    from selenium.webdriver.common.keys import Keys
    _open(browser, web.url)
    message = browser.find_element("id", "message")
    before = _done(browser)
    browser.find_element("id", "query").send_keys(Keys.ENTER)  # nothing typed
    _wait_done(browser, before)
    assert message.is_displayed() and "search box is empty" in message.text
    notes = tmp_path / "notes.png"
    notes.write_text("I am text, named like a picture")
    before = _done(browser)
    browser.find_element("id", "photo").send_keys(str(notes))
    _wait_done(browser, before)
    assert "notes.png is not an image the model reads" in message.text
    before = _done(browser)
    tag = browser.find_element("id", "tag")
    tag.send_keys("purple")
    browser.find_element("id", "query").send_keys("a red circle" + Keys.ENTER)
    _wait_done(browser, before)
    assert "unknown tag" in message.text, message.text
    tag.clear()
    before = _done(browser)
    browser.find_element("id", "search-button").click()
    _wait_done(browser, before)
    assert not message.is_displayed() and _tiles(browser)
    # The model server is down: the page says so, and the app answers the next query.
    _open(browser, dead_web.url)
    status = browser.find_element("id", "server-status")
    assert "cannot be reached" in status.text and "down" in status.get_attribute("class")
    for attempt in range(2):
        before = _done(browser)
        box = browser.find_element("id", "query")
        box.clear()
        box.send_keys("a red circle" + Keys.ENTER)
        _wait_done(browser, before)
        message = browser.find_element("id", "message")
        assert message.is_displayed() and "cannot be reached" in message.text, message.text
    assert dead_web.alive()
    _shot(browser, shots, "server_down.png")
