"""Raw-input SavedModels for TF Serving: image bytes → embedding, sentences → embedding.

Layout written under an export folder (what `tensorflow_model_server --model_config_file` reads):

    exports/
      models.config                        ModelServerConfig text proto listing every model
      image_encoder/<version>/             SavedModel, signature serving_default:
        saved_model.pb, variables/           images: string[None] (JPEG/PNG/GIF/BMP/WebP ≤ 40 MP)
        assets.extra/tf_serving_warmup_requests      → embedding: float32[None, D], L2-normalised
      text_encoder/<version>/              SavedModel, signatures serving_default:
        ...                                  sentences: string[None] → embedding: float32[None, D]
                                           and token_ids: sentences → token_ids: int32[None, L]

Everything between the raw input and the embedding runs inside the graph, with the same code the
evaluation uses: `pipeline.decode_image`, then the run's test geometry (keep_aspect:
`pipeline.resize_short_side` + `model.window_embedding`, one image at a time so a request may mix
aspect ratios; squash: the whole-image resize of `pipeline.load_eval_image`),
the flip-sum when `config.test_flip_sum`, `text.token_ids` (the training tokeniser and the
vocabulary's StaticHashTable) and the Position-Shift sum when `config.test_shift_sum`. So served
embeddings equal `evaluation.embed_images` / `embed_token_ids` on the same inputs. The graphs use
core TensorFlow ops plus TF Text's NormalizeUTF8 and CaseFoldUTF8, which TF Serving links in.

Versions are integer folders. Each is written to a hidden temporary sibling (".tmp-…", a name
TF Serving ignores) and renamed into place, so a half-written version is never visible.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_instance import text
from keras_instance.config import Config
from keras_instance.data import pipeline
from keras_instance.model import DualPath, shift_sum_embedding, window_embedding

IMAGE_MODEL = "image_encoder"
TEXT_MODEL = "text_encoder"
SIGNATURE = "serving_default"
MODELS_CONFIG = "models.config"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Where the export folder is mounted inside the tensorflow/serving container:
#   docker run -v "$PWD/exports:/models" tensorflow/serving \
#       --model_config_file=/models/models.config
CONTAINER_BASE_PATH = "/models"
KERAS_MODEL_FILE = "model.keras"
WARMUP_SENTENCES = ("a red circle on the left", "Two shapes: a large blue square and a cross.")


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """x / max(‖x‖, 1e-12), row-wise: exactly `evaluation.l2_normalize`."""
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), 1e-12)


# --- image bytes checks (before any pixel is decoded) -------------------------------------------

# Largest image the image encoder decodes: 40 megapixels (a 40 MP RGB image is 120 MB as uint8 and
# 480 MB as the float32 the pipeline resizes). Checked from the file's header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000
# Kinds `tf.io.decode_image` reads, by file signature (as DecodeImage detects them).
_UNKNOWN, _JPEG, _PNG, _GIF, _BMP, _WEBP = range(6)
_KIND_NAMES = ("unknown", "JPEG", "PNG", "GIF", "BMP", "WebP")
# Fewest bytes that hold each kind's width and height (JPEG: ExtractJpegShape finds them).
_MIN_BYTES = (1, 4, 24, 13, 26, 30)
_GIF_STRIDE = 64  # full GIF sub-blocks skipped per step of the block walk


def _bytes_at(data: tf.Tensor, pos: tf.Tensor, n: int) -> tf.Tensor:
    """n bytes of `data` from `pos` as int64 [n], zero past the end (never out of range)."""
    pos = tf.minimum(tf.cast(pos, tf.int64), tf.cast(tf.strings.length(data), tf.int64))
    chunk = tf.strings.substr(data, pos, n) + b"\0" * n
    return tf.cast(tf.io.decode_raw(tf.strings.substr(chunk, 0, n), tf.uint8), tf.int64)


def _head(data: tf.Tensor, n: int = 32) -> tf.Tensor:
    """The first n bytes of `data`, zero-padded to n (substr past the end would fail)."""
    return tf.strings.substr(tf.strings.substr(data, 0, n) + b"\0" * n, 0, n)


def _image_kind(data: tf.Tensor) -> tf.Tensor:
    """_JPEG … _WEBP from the file signature, _UNKNOWN otherwise (int32 scalar)."""
    head = _head(data)

    def starts(prefix, at=0):  # no signature holds a zero byte, so the padding never matches
        return tf.equal(tf.strings.substr(head, at, len(prefix)), prefix)
    kinds = tf.stack([starts(b"\xff\xd8\xff"), starts(b"\x89PNG\r\n\x1a\n"), starts(b"GIF8"),
                      starts(b"BM"), starts(b"RIFF") & starts(b"WEBP", 8)])
    return tf.where(tf.reduce_any(kinds), tf.argmax(tf.cast(kinds, tf.int32),
                                                    output_type=tf.int32) + 1, _UNKNOWN)


def _gif_frames(data: tf.Tensor, max_pixels: int):
    """(first frame's width, height, frame count, pixels of all frames) of a GIF.

    DecodeImage returns the first frame at the first frame's own size, but giflib reads every
    frame into memory first, so all of them count. Walks the blocks after the header: extensions
    (0x21) and image descriptors (0x2C), each followed by a chain of length-prefixed sub-blocks
    (runs of full 255-byte sub-blocks are skipped _GIF_STRIDE at a time). Stops once the pixels
    pass `max_pixels`; a walk that runs off the end leaves the rest to the decoder, which rejects
    truncated files.
    """
    length = tf.cast(tf.strings.length(data), tf.int64)
    packed = _bytes_at(data, 10, 1)[0]
    zero = tf.constant(0, tf.int64)

    def table_size(flags):  # bytes of a global/local colour table
        return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                                tf.bitwise.bitwise_and(flags, 7)),
                        zero)

    strides = 256 * tf.range(_GIF_STRIDE, dtype=tf.int64)

    def body(pos, in_chain, frames, pixels, width, height):
        b = _bytes_at(data, pos, 10)
        # Inside a chain: sizes of the next _GIF_STRIDE sub-blocks if they were all full.
        ahead = tf.strings.substr(data, tf.minimum(pos + strides, length),
                                  tf.ones([_GIF_STRIDE], tf.int64))
        ahead = tf.io.decode_raw(tf.strings.substr(ahead + b"\0", 0, 1), tf.uint8)[:, 0]
        full = tf.reduce_sum(tf.math.cumprod(tf.cast(tf.equal(ahead, 255), tf.int64)))
        chain_pos = tf.where(full > 0, pos + 256 * full, pos + 1 + b[0])
        chain_on = (full > 0) | (b[0] > 0)
        is_ext, is_image = tf.equal(b[0], 0x21), tf.equal(b[0], 0x2C)
        w, h = b[5] + 256 * b[6], b[7] + 256 * b[8]
        block_end = tf.where(is_ext, pos + 2,
                             tf.where(is_image, pos + 11 + table_size(b[9]), length))
        found = tf.logical_not(in_chain) & is_image
        first = found & tf.equal(frames, 0)
        return (tf.where(in_chain, chain_pos, block_end),
                tf.where(in_chain, chain_on, is_ext | is_image),
                frames + tf.cast(found, tf.int64), pixels + tf.where(found, w * h, zero),
                tf.where(first, w, width), tf.where(first, h, height))

    _, _, frames, pixels, width, height = tf.while_loop(
        lambda pos, in_chain, frames, pixels, *_: (pos < length) & (pixels <= max_pixels), body,
        (13 + table_size(packed), tf.constant(False), zero, zero, zero, zero),
        parallel_iterations=1)
    return width, height, frames, pixels


def _image_size(data: tf.Tensor, kind: tf.Tensor, max_pixels: int):
    """(width, height, frames, pixels the decoder holds) from the header of a checked image."""
    b = _bytes_at(data, 0, 32)

    def u16le(i):
        return b[i] + 256 * b[i + 1]

    def u32(i, big_endian):
        order = (0, 1, 2, 3) if big_endian else (3, 2, 1, 0)
        return sum(b[i + o] * 256 ** (3 - k) for k, o in enumerate(order))

    png_w, png_h = u32(16, True), u32(20, True)
    bmp_w = u32(18, False)
    bmp_h = u32(22, False)
    bmp_w, bmp_h = (tf.abs(tf.where(v >= 2 ** 31, v - 2 ** 32, v)) for v in (bmp_w, bmp_h))
    chunk = tf.strings.substr(_head(data), 12, 4)
    bits = u32(21, False)
    webp_w = tf.where(tf.equal(chunk, b"VP8X"), 1 + b[24] + 256 * u16le(25),
                      tf.where(tf.equal(chunk, b"VP8L"), 1 + bits % 16384,
                               u16le(26) % 16384))
    webp_h = tf.where(tf.equal(chunk, b"VP8X"), 1 + b[27] + 256 * u16le(28),
                      tf.where(tf.equal(chunk, b"VP8L"), 1 + (bits // 16384) % 16384,
                               u16le(28) % 16384))
    zero = tf.constant(0, tf.int64)
    jpeg_h, jpeg_w = tf.unstack(tf.cond(
        tf.equal(kind, _JPEG),
        lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
        lambda: tf.zeros([2], tf.int64)))
    gif = tf.cond(tf.equal(kind, _GIF), lambda: _gif_frames(data, max_pixels), lambda: (zero,) * 4)
    widths = tf.stack([zero, jpeg_w, png_w, gif[0], bmp_w, webp_w])
    heights = tf.stack([zero, jpeg_h, png_h, gif[1], bmp_h, webp_h])
    width, height = widths[kind], heights[kind]
    frames = tf.where(tf.equal(kind, _GIF), gif[2], tf.constant(1, tf.int64))
    pixels = tf.where(tf.equal(kind, _GIF), gif[3], width * height)
    return width, height, frames, pixels


def checked_image_bytes(data: tf.Tensor, index: tf.Tensor,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Tensor:
    """`data`, once it is known to be a whole JPEG/PNG/GIF/BMP/WebP of at most `max_pixels`.

    Fails with InvalidArgumentError naming `images[index]` and what is wrong: empty, an unknown
    kind, a header cut short, a JPEG without its end-of-image marker or a PNG without its IEND
    chunk (truncated), or more pixels than `max_pixels` (all frames of a GIF count). Nothing is
    decoded before these checks pass. Damage the header cannot show is left to DecodeImage, which
    fails with its own message (e.g. "jpeg::Uncompress failed. Invalid JPEG data").
    """
    index = tf.cast(index, tf.int64)
    length = tf.cast(tf.strings.length(data), tf.int64)
    kind = _image_kind(data)
    name = tf.gather(tf.constant(_KIND_NAMES), kind)
    end_marker = tf.where(tf.equal(kind, _JPEG), b"\xff\xd9", b"IEND")
    has_end = tf.size(tf.strings.split(tf.reshape(data, [1]), sep=end_marker,
                                       maxsplit=1).flat_values) > 1
    short = length < tf.gather(tf.constant(_MIN_BYTES, tf.int64), kind)
    truncated = ((tf.equal(kind, _JPEG) | tf.equal(kind, _PNG)) & tf.logical_not(has_end))
    truncated_what = tf.where(tf.equal(kind, _JPEG), " (no end-of-image marker)",
                              " (no IEND chunk)")
    problem = tf.where(
        tf.equal(length, 0), tf.strings.format("images[{}]: empty (zero bytes)", [index]),
        tf.where(tf.equal(kind, _UNKNOWN),
                 tf.strings.format("images[{}]: not a JPEG, PNG, GIF, BMP or WebP image "
                                   "(unrecognised first bytes)", [index]),
                 tf.where(short,
                          tf.strings.join([tf.strings.format("images[{}]: truncated ", [index]),
                                           name, tf.strings.format(
                                               " ({} bytes, too short for its header)",
                                               [length])]),
                          tf.where(truncated,
                                   tf.strings.join([tf.strings.format("images[{}]: truncated ",
                                                                      [index]),
                                                    name, truncated_what]),
                                   ""))))
    well_formed = tf.debugging.Assert(tf.equal(problem, ""), [problem])
    with tf.control_dependencies([well_formed]):
        width, height, frames, pixels = _image_size(data, kind, max_pixels)
    limit = f"more than the {max_pixels / 1e6:g} MP limit"
    too_big = tf.where(
        frames > 1,
        tf.strings.format("images[{}] is a GIF whose first {} frames hold {} pixels (the first "
                          "is {}x{}), " + limit, [index, frames, pixels, width, height]),
        tf.strings.format("images[{}] is {}x{} pixels, " + limit, [index, width, height]))
    small_enough = tf.debugging.Assert(pixels <= max_pixels, [too_big])
    with tf.control_dependencies([small_enough]):
        return tf.identity(data)


class ImageEncoderModule(tf.Module):
    """`serving_default`: images (encoded bytes) [N] → {"embedding": [N, D]}.

    Each image is checked from its header first (`checked_image_bytes`: empty, unknown kind,
    truncated, more than `max_pixels`), then decoded exactly as evaluation decodes it
    (`pipeline.decode_image`: RGB, grayscale/CMYK converted, alpha dropped, a GIF's first frame).
    Any bad image fails the whole request with InvalidArgumentError; the server goes on.

    Geometry as in evaluation: "keep_aspect" embeds each image at its own size (short side
    `short_side`; a request may mix aspect ratios) with `model.window_embedding`; "squash"
    resizes all to image_size² and encodes them as one batch.
    """

    def __init__(self, dual: DualPath, flip_sum: bool, max_pixels: int = MAX_IMAGE_PIXELS,
                 feature: str = "embedding", geometry: str = "squash", short_side: int = 256):
        super().__init__(name=IMAGE_MODEL)
        self.encoder = dual.image_encoder()
        self.backbone, self.image_head = dual.backbone, dual.image_head  # tracked: saved
        self.backbone_name = dual.backbone_name
        self.image_size = int(dual.image_size)
        self.flip_sum = bool(flip_sum)
        self.max_pixels = int(max_pixels)
        self.feature = feature  # the branch output served as "embedding" (config.test_feature)
        self.geometry = geometry
        self.short_side = int(short_side)
        self.embed_dim = int(self.encoder.output[feature].shape[-1])

    def _decode(self, data, index) -> tf.Tensor:
        return pipeline.decode_image(checked_image_bytes(data, index, self.max_pixels))

    def _squashed(self, item) -> tf.Tensor:
        return tf.image.resize(self._decode(*item), [self.image_size, self.image_size])

    def _windows(self, pixels: tf.Tensor) -> tf.Tensor:
        return window_embedding(self.backbone, self.image_head, self.backbone_name,
                                self.image_size, pixels, self.feature)

    def _embed_whole(self, item) -> tf.Tensor:
        pixels = pipeline.resize_short_side(self._decode(*item), self.short_side)[tf.newaxis]
        embedding = self._windows(pixels)
        if self.flip_sum:
            embedding = embedding + self._windows(tf.image.flip_left_right(pixels))
        return embedding[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        items = (images, tf.range(tf.shape(images)[0]))
        if self.geometry == "keep_aspect":
            embedding = tf.map_fn(self._embed_whole, items,
                                  fn_output_signature=tf.TensorSpec([self.embed_dim], tf.float32))
            return {"embedding": _l2_normalize(embedding)}
        size = self.image_size
        pixels = tf.map_fn(self._squashed, items,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        embedding = self.encoder(pixels, training=False)[self.feature]
        if self.flip_sum:
            embedding = embedding + self.encoder(tf.image.flip_left_right(pixels),
                                                 training=False)[self.feature]
        return {"embedding": _l2_normalize(tf.cast(embedding, tf.float32))}


class TextEncoderModule(tf.Module):
    """`serving_default`: sentences [N] → {"embedding": [N, D]}; `token_ids` for inspection."""

    def __init__(self, text_encoder: keras.Model, vocab: text.Vocabulary, max_length: int,
                 shift_sum: bool, feature: str = "embedding"):
        super().__init__(name=TEXT_MODEL)
        self.encoder = text_encoder
        self.table = vocab.lookup_table()  # a tracked resource: saved with the SavedModel
        self.max_length = int(max_length)
        self.shift_sum = bool(shift_sum)
        self.feature = feature  # the branch output served as "embedding" (config.test_feature)
        self.embed_dim = int(text_encoder.output[feature].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def token_ids(self, sentences):
        """The training pipeline's own front end (`text.token_ids`): int32 [N, max_length]."""
        return text.token_ids(sentences, self.table, self.max_length)

    def _embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.encoder(tokens, training=False)[self.feature], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        tokens = self.token_ids(sentences)
        embedding = (shift_sum_embedding(self.encoder, tokens, self.feature) if self.shift_sum
                     else self._embed(tokens))
        return {"embedding": _l2_normalize(embedding)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve_token_ids(self, sentences):
        return {"token_ids": self.token_ids(sentences)}


def image_module(config: Config, dual: DualPath) -> ImageEncoderModule:
    return ImageEncoderModule(dual, config.test_flip_sum, feature=config.test_feature,
                              geometry=config.test_geometry, short_side=config.short_side)


def text_module(config: Config, dual: DualPath, vocab: text.Vocabulary) -> TextEncoderModule:
    return TextEncoderModule(dual.text_encoder, vocab, config.max_length, config.test_shift_sum,
                             feature=config.test_feature)


# --- warmup requests ------------------------------------------------------------------------

def demo_jpeg(size: int, seed: int = 0) -> bytes:
    """A small generated JPEG (colour gradient plus noise) for warmup requests and tests."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 255 // max(size - 1, 1), y * 255 // max(size - 1, 1),
                      rng.integers(0, 256, (size, size))], axis=-1).astype(np.uint8)
    return tf.io.encode_jpeg(image).numpy()


def warmup_requests(model_name: str, input_name: str, batches: Sequence[Sequence[bytes]]):
    """PredictionLog records, one Predict request per batch (TF Serving's warmup format)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    logs = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE
        request.inputs[input_name].CopyFrom(
            tf.make_tensor_proto(list(batch), dtype=tf.string, shape=[len(batch)]))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup(version_dir: str, logs) -> str:
    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


# --- versions and layout -------------------------------------------------------------------

def existing_versions(model_dir: str) -> list[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir)
                  if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def next_version(export_dir: str, model_names: Iterable[str]) -> int:
    """1 + the largest version of any of `model_names` (so both encoders share a number)."""
    found = [v for name in model_names for v in existing_versions(os.path.join(export_dir, name))]
    return max(found, default=0) + 1


def save_version(module: tf.Module, model_dir: str, version: int, signatures: dict,
                 warmup_logs=()) -> str:
    """Write `module` as `model_dir/<version>` through a temporary sibling and one rename."""
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; versions are never overwritten "
                              "(pass another --version, or none for the next free one)")
    os.makedirs(model_dir, exist_ok=True)
    # os.mkdir (not tempfile.mkdtemp, which makes it 0700) so the server's user can read it.
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        if warmup_logs:
            write_warmup(tmp, warmup_logs)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def export_image_encoder(module: ImageEncoderModule, export_dir: str, version: int,
                         name: str = IMAGE_MODEL) -> str:
    size = module.image_size
    logs = warmup_requests(name, "images", [[demo_jpeg(size, 0)],
                                            [demo_jpeg(size, 1), demo_jpeg(2 * size, 2)]])
    return save_version(module, os.path.join(export_dir, name), version,
                        {SIGNATURE: module.serve}, logs)


def export_text_encoder(module: TextEncoderModule, export_dir: str, version: int,
                        name: str = TEXT_MODEL) -> str:
    logs = warmup_requests(name, "sentences",
                           [[s.encode("utf-8") for s in WARMUP_SENTENCES[:1]],
                            [s.encode("utf-8") for s in WARMUP_SENTENCES]])
    return save_version(module, os.path.join(export_dir, name), version,
                        {SIGNATURE: module.serve, "token_ids": module.serve_token_ids}, logs)


def models_config(names: Iterable[str], base_path: str = CONTAINER_BASE_PATH):
    """ModelServerConfig listing `names`, each at `base_path/<name>` (the container's path)."""
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
    return config


def exported_models(export_dir: str) -> list[str]:
    """Model folders of `export_dir` holding at least one version."""
    return sorted(n for n in os.listdir(export_dir)
                  if os.path.isdir(os.path.join(export_dir, n))
                  and existing_versions(os.path.join(export_dir, n)))


def write_models_config(export_dir: str, base_path: str = CONTAINER_BASE_PATH) -> str:
    """`export_dir/models.config` listing every exported model (written atomically)."""
    from google.protobuf import text_format
    path = os.path.join(export_dir, MODELS_CONFIG)
    body = ("# TF Serving model config: base paths are inside the tensorflow/serving container,\n"
            f"# where this folder is mounted at {base_path}.\n"
            + text_format.MessageToString(models_config(exported_models(export_dir), base_path)))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)
    return path


def save_keras_model(dual: DualPath, workdir: str) -> str:
    """The whole dual-path model as `workdir/model.keras` (loads after `import keras_instance`)."""
    path = os.path.join(workdir, KERAS_MODEL_FILE)
    dual.full_model().save(path)
    return path


def export(config: Config, dual: DualPath, vocab: text.Vocabulary, export_dir: str,
           version: int | None = None, base_path: str = CONTAINER_BASE_PATH) -> dict:
    """Both encoders as version `version` (default: next free) plus models.config."""
    os.makedirs(export_dir, exist_ok=True)
    if version is None:
        version = next_version(export_dir, (IMAGE_MODEL, TEXT_MODEL))
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    for name in (IMAGE_MODEL, TEXT_MODEL):
        taken = os.path.join(export_dir, name, str(version))
        if os.path.exists(taken):
            raise FileExistsError(f"{taken} already exists; versions are never overwritten")
    image_dir = export_image_encoder(image_module(config, dual), export_dir, version)
    text_dir = export_text_encoder(text_module(config, dual, vocab), export_dir, version)
    return {"version": version, IMAGE_MODEL: image_dir, TEXT_MODEL: text_dir,
            "models_config": write_models_config(export_dir, base_path)}
