"""Bad input never takes the server down (issue 3): every difficult input of the issue, sent with
the real client (`serving.client.predict`) to the stand-in server serving REAL exported encoders.

One tiny demo model is trained and exported once for the module (as tests/test_export.py does),
the stand-in is started on loopback with the exported models.config, and each item must give
INVALID_ARGUMENT with a message saying what is wrong, or its defined result (serving/README.md,
"Difficult inputs"); after every bad request a good one is served normally, and the server is
still running at the end. Defined results are compared with in-process evaluation
(`embeddings.embed_images` / `embed_token_ids`) on the same input.
"""
import io
import os
import re
import time

import grpc
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from keras_instance.export import layout, served_model  # noqa: E402
from keras_instance.retrieval import embeddings  # noqa: E402
from keras_instance.text import tokenizer  # noqa: E402
from serving import client  # noqa: E402
from serving.standin_process import StandinProcess  # noqa: E402

pytestmark = pytest.mark.server  # these start the stand-in server
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
IMAGE, TEXT = served_model.IMAGE_MODEL, served_model.TEXT_MODEL
ATOL = 1e-5


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model(trained_run, tmp_path_factory):
    """The session's tiny trained run and its exported encoders (version 1)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    config, dual, vocab = trained_run["config"], trained_run["dual"], trained_run["vocab"]
    exports = trained_run["exports"]
    test = trained_run["test"]
    good_image = open(test[0].image_path, "rb").read()
    good_caption = test[0].captions[0]
    return dict(config=config, dual=dual, vocab=vocab, exports=exports, root=root,
                good_image=good_image, good_caption=good_caption,
                good_image_emb=embed_images(config, dual, root, [good_image])[0],
                good_text_emb=embed_sentences(config, dual, vocab, [good_caption])[0])


@pytest.fixture(scope="module")
def server(model):
    """`python -m serving.standin` on a free loopback port, serving the exports."""
    standin = StandinProcess(
        [f"--model_config={os.path.join(model['exports'], layout.MODELS_CONFIG)}",
         "--file_system_poll_wait_seconds=0"],
        os.path.join(model["root"], "standin.log"), env=ENV)
    channel = None
    try:
        channel = client.make_channel(standin.address)
        yield dict(proc=standin.proc, stub=client.prediction_stub(channel),
                   log_path=standin.log_path, address=standin.address)
    finally:
        if channel is not None:
            channel.close()
        standin.stop()


# ----------------------------------------------------------------------------- helpers

def embed_images(config, dual, root, images):
    """In-process evaluation of image bytes (written to files, as evaluation reads them)."""
    folder = os.path.join(root, "eval_images")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for data in images:
        paths.append(os.path.join(folder, f"{len(os.listdir(folder))}.img"))
        with open(paths[-1], "wb") as f:
            f.write(data)
    return embeddings.embed_images(dual.image_encoder(), paths, config.image.image_size,
                                   config.test.test_flip_sum)


def embed_sentences(config, dual, vocab, sentences):
    """In-process evaluation of sentences (str or raw bytes) through the training front end."""
    raw = [s.encode("utf-8") if isinstance(s, str) else s for s in sentences]
    tokens = tokenizer.token_ids(tf.constant(raw), vocab.lookup_table(), config.data.max_length)
    return embeddings.embed_token_ids(dual.text_encoder, tokens.numpy(), config.test.test_shift_sum)


def served(server, name, values, **kwargs):
    key = "images" if name == IMAGE else "sentences"
    return client.predict(server["stub"], name, {key: values}, timeout=60, **kwargs)


def assert_good_requests_served(server, model):
    """The request after a bad one: a normal image and a normal sentence, served as usual."""
    got = served(server, IMAGE, [model["good_image"]])["embedding"]
    np.testing.assert_allclose(got[0], model["good_image_emb"], atol=ATOL)
    got = served(server, TEXT, [model["good_caption"]])["embedding"]
    np.testing.assert_allclose(got[0], model["good_text_emb"], atol=ATOL)
    assert server["proc"].poll() is None


def assert_rejected(server, model, name, values, pattern):
    """INVALID_ARGUMENT whose message matches `pattern`; then good requests are served."""
    with pytest.raises(grpc.RpcError) as info:
        served(server, name, values)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert re.search(pattern, err.details()), err.details()
    assert "rejected the request" in client.describe_error(err, server["address"], name)
    assert_good_requests_served(server, model)
    return err.details()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(height=40, width=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header claims width × height (pixel data unchanged)."""
    data = bytearray(encode(noise(), "JPEG"))
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    data[pos + 5:pos + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def corrupt_png_body() -> bytes:
    data = bytearray(encode(noise(), "PNG"))
    start = data.index(b"IDAT") + 100
    data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
    return bytes(data)


def corrupt_jpeg_scan() -> bytes:
    """Damage inside the entropy-coded data: libjpeg reads past it (a warning, not an error)."""
    data = bytearray(encode(noise(), "JPEG"))
    start = data.index(b"\xff\xda") + 200
    for k in range(start, start + 60):  # markers (0xFF and the byte after) left as they are
        if data[k] != 0xFF and data[k - 1] != 0xFF:
            data[k] = min(data[k] ^ 0x33, 0xFE)
    return bytes(data)


# ----------------------------------------------------------------------------- images

BAD_IMAGES = {
    "zero-byte": (lambda: b"", r"images\[0\]: empty \(zero bytes\)"),
    "corrupt (not an image)": (lambda: b"this is not an image at all" * 4,
                               r"images\[0\]: not a JPEG, PNG, GIF, BMP or WebP image"),
    "corrupt JPEG header": (lambda: b"\xff\xd8\xff\xe0" + b"garbage!" * 20 + b"\xff\xd9",
                            r"Invalid JPEG data"),
    "corrupt PNG body": (corrupt_png_body, r"Invalid PNG data"),
    "truncated JPEG": (lambda: encode(noise(80, 96), "JPEG")[:3000],
                       r"images\[0\]: truncated JPEG \(no end-of-image marker\)"),
    "truncated PNG": (lambda: encode(noise(), "PNG")[:300],
                      r"images\[0\]: truncated PNG \(no IEND chunk\)"),
    "truncated header": (lambda: encode(noise(), "PNG")[:20],
                         r"images\[0\]: truncated PNG \(20 bytes, too short for its header\)"),
    "10000x10000 PNG": (lambda: encode(Image.new("1", (10000, 10000)), "PNG"),
                        r"images\[0\] is 10000x10000 pixels, more than the 40 MP limit"),
    "10000x10000 JPEG header": (lambda: jpeg_with_size(10000, 10000),
                                r"images\[0\] is 10000x10000 pixels, more than the 40 MP limit"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_invalid_argument(server, model, case):
    make, pattern = BAD_IMAGES[case]
    assert_rejected(server, model, IMAGE, [make()], pattern)


def test_mixed_image_batch_fails_naming_the_bad_item(server, model):
    good = model["good_image"]
    assert_rejected(server, model, IMAGE, [good, good, b""], r"images\[2\]: empty")
    assert_rejected(server, model, IMAGE, [good, encode(Image.new("1", (10000, 10000)), "PNG"),
                                           good], r"images\[1\] is 10000x10000 pixels")
    assert_rejected(server, model, IMAGE, [good, encode(noise(80, 96), "JPEG")[:3000]],
                    r"images\[1\]: truncated JPEG")


def test_other_image_kinds_decode_as_evaluation(server, model):
    """GIF (first frame), grayscale and CMYK JPEG, PNG with alpha, BMP, WebP, a JPEG with damaged
    scan data: served = in-process evaluation of the same bytes, in one batch and one by one."""
    picture = noise(seed=1)
    frames = [noise(seed=s).convert("P") for s in (2, 3)]
    images = {
        "gif (animated)": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "grayscale jpeg": encode(picture.convert("L"), "JPEG"),
        "cmyk jpeg": encode(picture.convert("CMYK"), "JPEG"),
        "png with alpha": encode(picture.convert("RGBA"), "PNG"),
        "bmp": encode(picture, "BMP"),
        "webp": encode(picture, "WEBP"),
        "jpeg, damaged scan data": corrupt_jpeg_scan(),
        "larger jpeg": encode(noise(300, 200, seed=4), "JPEG"),
    }
    assert Image.open(io.BytesIO(images["cmyk jpeg"])).mode == "CMYK"
    values = list(images.values())
    expected = embed_images(model["config"], model["dual"], model["root"], values)
    got = served(server, IMAGE, values)["embedding"]
    np.testing.assert_allclose(got, expected, atol=ATOL)
    for i, value in enumerate(values):
        np.testing.assert_allclose(served(server, IMAGE, [value])["embedding"][0], expected[i],
                                   atol=ATOL, err_msg=list(images)[i])
    # The GIF's result is its first frame's.
    first_frame = encode(frames[0].convert("RGB"), "PNG")
    np.testing.assert_allclose(served(server, IMAGE, [first_frame])["embedding"][0], got[0],
                               atol=ATOL)
    assert_good_requests_served(server, model)


# ----------------------------------------------------------------------------- sentences

def test_sentences_without_known_words_embed_as_padding(server, model):
    """Empty, whitespace only, only unknown words: all padding → one constant vector, the same
    as in-process evaluation gives such captions."""
    config, vocab = model["config"], model["vocab"]
    sentences = ["", "   \t\n  ", "zzzq qqxz, xyzzyq!"]
    assert not any(w in vocab.index for w in ["zzzq", "qqxz", "xyzzyq"])
    ids = served(server, TEXT, sentences, signature_name="token_ids")["token_ids"]
    np.testing.assert_array_equal(ids, np.zeros((3, config.data.max_length), np.int32))
    padding = embeddings.embed_token_ids(model["dual"].text_encoder,
                                         np.zeros((1, config.data.max_length), np.int32),
                                         config.test.test_shift_sum)[0]
    got = served(server, TEXT, sentences)["embedding"]
    for row in got:
        np.testing.assert_allclose(row, padding, atol=ATOL)
    assert_good_requests_served(server, model)


def test_long_and_non_utf8_sentences_have_defined_embeddings(server, model):
    config, dual, vocab = model["config"], model["dual"], model["vocab"]
    caption = model["good_caption"]
    words = tokenizer.tokenize_py([caption])[0]
    # 100 KB: the first max_length known words are kept.
    long_sentence = (caption + " ") * (100_000 // (len(caption) + 1) + 1)
    long_sentence = long_sentence[:100_000]
    start = time.perf_counter()
    got = served(server, TEXT, [long_sentence])["embedding"][0]
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"a 100 KB sentence took {elapsed:.1f} s"
    kept = [w for w in tokenizer.tokenize_py([long_sentence])[0] if w in vocab.index]
    prefix = " ".join(kept[:config.data.max_length])
    np.testing.assert_allclose(got, embed_sentences(config, dual, vocab, [prefix])[0], atol=ATOL)
    np.testing.assert_allclose(got, embed_sentences(config, dual, vocab, [long_sentence])[0],
                               atol=ATOL)
    assert_good_requests_served(server, model)
    # Bytes that are not UTF-8 become U+FFFD, which separates words like punctuation does.
    broken = b"\xff\xfe" + b" \xc3\x28 ".join(w.encode() for w in words) + b"\x80"
    with pytest.raises(UnicodeDecodeError):
        broken.decode("utf-8")
    ids = served(server, TEXT, [broken, caption], signature_name="token_ids")["token_ids"]
    np.testing.assert_array_equal(ids[0], ids[1])
    got = served(server, TEXT, [broken])["embedding"][0]
    np.testing.assert_allclose(got, model["good_text_emb"], atol=ATOL)
    np.testing.assert_allclose(got, embed_sentences(config, dual, vocab, [broken])[0], atol=ATOL)
    assert_good_requests_served(server, model)


def test_mixed_sentence_batch_gives_each_its_own_result(server, model):
    config, dual, vocab = model["config"], model["dual"], model["vocab"]
    batch = [model["good_caption"], "", b"red \xff circle", "   ", "zzzq", "x" * 100_000,
             "A RED circle, on the LEFT!"]
    got = served(server, TEXT, batch)["embedding"]
    np.testing.assert_allclose(got, embed_sentences(config, dual, vocab, batch), atol=ATOL)
    for i, sentence in enumerate(batch):
        np.testing.assert_allclose(served(server, TEXT, [sentence])["embedding"][0], got[i],
                                   atol=ATOL, err_msg=repr(sentence)[:40])
    assert_good_requests_served(server, model)


# ----------------------------------------------------------------------------- the server

def test_server_is_still_running(server, model):
    assert_good_requests_served(server, model)
    assert server["proc"].poll() is None
    with open(server["log_path"], errors="replace") as f:
        log = f.read()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
    # libjpeg writes its complaints about the corrupt JPEGs ("Corrupt JPEG data: ...", "Input
    # file read error", "Unsupported marker type 0x14") straight to fd 2: no line may come
    # without context. Log records ("W1130 12:00:00.1 ...] predict #7 ... failed: ...") and
    # TensorFlow's C++ lines from before the server started are the only other lines.
    record = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
    bare = [line for line in log.splitlines() if line and not record.match(line)
            and not line.startswith("standin_server: ")
            and "before absl::InitializeLog() is called" not in line]
    assert not bare, bare
    native = [line for line in log.splitlines() if line.startswith("standin_server: native")]
    assert any("Corrupt JPEG data" in line for line in native), log[-3000:]
    for line in native:
        assert line.startswith("standin_server: native stderr during predict #"), line
        assert f"{IMAGE}, inputs images: string[" in line, line
