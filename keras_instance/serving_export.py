"""Raw-input SavedModels for TF Serving: image bytes → embedding, sentences → embedding.

Layout written under an export folder (what `tensorflow_model_server --model_config_file` reads):

    exports/
      models.config                        ModelServerConfig text proto listing every model
      image_encoder/<version>/             SavedModel, signature serving_default:
        saved_model.pb, variables/           images: string[None] (JPEG/PNG/BMP/GIF bytes)
        assets.extra/tf_serving_warmup_requests      → embedding: float32[None, D], L2-normalised
      text_encoder/<version>/              SavedModel, signatures serving_default:
        ...                                  sentences: string[None] → embedding: float32[None, D]
                                           and token_ids: sentences → token_ids: int32[None, L]

Everything between the raw input and the embedding runs inside the graph, with the same code the
evaluation uses: `pipeline.decode_image` + whole-image resize (as `pipeline.load_eval_image`),
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
from keras_instance.model import DualPath

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


class ImageEncoderModule(tf.Module):
    """`serving_default`: images (encoded bytes) [N] → {"embedding": [N, D]}."""

    def __init__(self, image_encoder: keras.Model, image_size: int, flip_sum: bool):
        super().__init__(name=IMAGE_MODEL)
        self.encoder = image_encoder
        self.image_size = int(image_size)
        self.flip_sum = bool(flip_sum)
        self.embed_dim = int(image_encoder.output["embedding"].shape[-1])

    def _load(self, data: tf.Tensor) -> tf.Tensor:
        # An empty string would otherwise fail deep inside DecodeImage with a vaguer message.
        tf.debugging.assert_greater(tf.strings.length(data), 0,
                                    message="image bytes are empty (zero-byte image)")
        # decode_image raises INVALID_ARGUMENT on unknown or corrupt data; the request fails,
        # the server goes on.
        image = pipeline.decode_image(data)
        return tf.image.resize(image, [self.image_size, self.image_size])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        size = self.image_size
        pixels = tf.map_fn(self._load, images,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        embedding = self.encoder(pixels, training=False)["embedding"]
        if self.flip_sum:
            embedding = embedding + self.encoder(tf.image.flip_left_right(pixels),
                                                 training=False)["embedding"]
        return {"embedding": _l2_normalize(tf.cast(embedding, tf.float32))}


class TextEncoderModule(tf.Module):
    """`serving_default`: sentences [N] → {"embedding": [N, D]}; `token_ids` for inspection."""

    def __init__(self, text_encoder: keras.Model, vocab: text.Vocabulary, max_length: int,
                 shift_sum: bool):
        super().__init__(name=TEXT_MODEL)
        self.encoder = text_encoder
        self.table = vocab.lookup_table()  # a tracked resource: saved with the SavedModel
        self.max_length = int(max_length)
        self.shift_sum = bool(shift_sum)
        self.embed_dim = int(text_encoder.output["embedding"].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def token_ids(self, sentences):
        """The training pipeline's own front end (`text.token_ids`): int32 [N, max_length]."""
        return text.token_ids(sentences, self.table, self.max_length)

    def _embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.encoder(tokens, training=False)["embedding"], tf.float32)

    def _shift_sum(self, tokens: tf.Tensor) -> tf.Tensor:
        """Σ over every Position-Shift offset 0..L−n of a sentence of n words (`all_shifts`).

        All L+1 rolls of every row are encoded as one batch [N·(L+1), L]; offsets beyond L−n are
        masked out of the sum (a sentence of no known words keeps all L+1, as `all_shifts` does).
        """
        length = self.max_length
        offsets = tf.range(length + 1)
        positions = tf.range(length)
        # roll by k: position j holds the word from (j − k) mod L
        source = tf.math.floormod(positions[tf.newaxis, :] - offsets[:, tf.newaxis], length)
        rolled = tf.gather(tokens, source, axis=1)                          # [N, L+1, L]
        emb = self._embed(tf.reshape(rolled, [-1, length]))                 # [N·(L+1), D]
        emb = tf.reshape(emb, [-1, length + 1, self.embed_dim])
        words = tf.reduce_sum(tf.cast(tokens != text.PAD_ID, tf.int32), axis=1)  # [N]
        keep = offsets[tf.newaxis, :] <= (length - words)[:, tf.newaxis]   # [N, L+1]
        summed = tf.reduce_sum(tf.cast(emb, tf.float64) * tf.cast(keep, tf.float64)[..., None],
                               axis=1)
        return tf.cast(summed, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        tokens = self.token_ids(sentences)
        embedding = self._shift_sum(tokens) if self.shift_sum else self._embed(tokens)
        return {"embedding": _l2_normalize(embedding)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve_token_ids(self, sentences):
        return {"token_ids": self.token_ids(sentences)}


def image_module(config: Config, dual: DualPath) -> ImageEncoderModule:
    return ImageEncoderModule(dual.image_encoder(), config.image_size, config.test_flip_sum)


def text_module(config: Config, dual: DualPath, vocab: text.Vocabulary) -> TextEncoderModule:
    return TextEncoderModule(dual.text_encoder, vocab, config.max_length, config.test_shift_sum)


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
