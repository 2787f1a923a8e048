"""TF Serving's folder layout: model folders of integer versions, warmup records, models.config.

    exports/
      models.config                           ModelServerConfig text proto listing every model
      <model>/<version>/                      a SavedModel (`save`), signatures as the module
        saved_model.pb, variables/              declares them
        assets.extra/tf_serving_warmup_requests   one Predict request per warmup batch

Versions are integer folders, never overwritten. Each is written to a hidden temporary sibling
(".tmp-…", a name TF Serving ignores) and renamed into place, so a half-written version is never
visible. `save` is the one way any served module (`modules.ExportModule`) reaches the disk.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"          # serving/constants.py holds the same (the client's copy)
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODELS_CONFIG = "models.config"
# Where the export folder is mounted inside the tensorflow/serving container:
#   docker run -v "$PWD/exports:/models" tensorflow/serving \
#       --model_config_file=/models/models.config
CONTAINER_BASE_PATH = "/models"


# --- versions -------------------------------------------------------------------------------

def existing_versions(model_dir: str) -> list[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir)
                  if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def next_version(export_dir: str, model_names: Iterable[str]) -> int:
    """1 + the largest version of any of `model_names` (so a pair of models shares a number)."""
    found = [v for name in model_names for v in existing_versions(os.path.join(export_dir, name))]
    return max(found, default=0) + 1


def claim_version(export_dir: str, model_names: Sequence[str], version: int | None) -> int:
    """The version to write for all of `model_names` (default: next free), checked free for each
    before anything is written."""
    os.makedirs(export_dir, exist_ok=True)
    if version is None:
        version = next_version(export_dir, model_names)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    for name in model_names:
        taken = os.path.join(export_dir, name, str(version))
        if os.path.exists(taken):
            raise FileExistsError(f"{taken} already exists; versions are never overwritten "
                                  "(pass another --version, or none for the next free one)")
    return version


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


# --- saving -----------------------------------------------------------------------------------

def save(module, export_dir: str, version: int) -> str:
    """Write a served module (`modules.ExportModule`) as `export_dir/<its name>/<version>`:
    its signatures, and its warmup batches as TF Serving's warmup records."""
    model_dir = os.path.join(export_dir, module.model_name)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; versions are never overwritten "
                              "(pass another --version, or none for the next free one)")
    os.makedirs(model_dir, exist_ok=True)
    # os.mkdir (not tempfile.mkdtemp, which makes it 0700) so the server's user can read it.
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        write_warmup(tmp, warmup_requests(module.model_name, module.input_name,
                                          module.warmup_batches()))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- models.config --------------------------------------------------------------------------

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
