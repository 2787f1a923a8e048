"""TF Serving's folder layout: model folders of integer versions, warmup records, models.config.

    exports/
      models.config                           ModelServerConfig text proto listing every model
      <model>/<version>/                      a SavedModel (`save`), signatures as the module
        saved_model.pb, variables/              declares them
        assets.extra/tf_serving_warmup_requests   one Predict request per warmup batch

Versions are integer folders, never overwritten. Each is written to a hidden temporary sibling
(".tmp-…", a name TF Serving ignores) and renamed into place, so a half-written version is never
visible. `save` is the one way any served module (`served_model.ServedModel`) reaches the disk.

A release (`release`) publishes several models together: every model's version folder is
written first, then models.config, which pins each model to one version
(`model_version_policy { specific … }`), is replaced in one rename. TF Serving (polling the
file: `--model_config_file_poll_wait_seconds`) and the stand-in switch every model at once, and
a version folder that is not pinned yet is never served: a release killed part-way serves what
was served before. The next release cleans what a killed one left (its `.tmp-*` folders, its
unpinned versions). Each version records the run it came from (`assets.extra/release.json`);
models.config never pins models of two runs, whose embeddings live in different spaces.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import uuid
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"          # serving/constants.py holds the same (the client's copy)
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
RELEASE_FILE = os.path.join("assets.extra", "release.json")  # run id, release version, models
PENDING = ".release-pending.json"      # a release under way: what to clean if it was killed
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

def save(module, export_dir: str, version: int, release_info: dict | None = None) -> str:
    """Write a served module (`served_model.ServedModel`) as `export_dir/<its name>/<version>`:
    its signatures, its warmup batches as TF Serving's warmup records, and `release_info`."""
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
        if release_info is not None:
            with open(os.path.join(tmp, RELEASE_FILE), "w") as f:
                json.dump(release_info, f, indent=2)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- releases -------------------------------------------------------------------------------

class Release:
    """The models of one release, written by `save` as one version, pinned together at the end."""

    def __init__(self, export_dir: str, models: Sequence[str], version: int, run_id: str):
        self.export_dir, self.models, self.version = export_dir, list(models), version
        self.run_id = run_id
        self.written: dict[str, str] = {}

    def save(self, module) -> str:
        if module.model_name not in self.models:
            raise ValueError(f"{module.model_name} is not one of this release's models "
                             f"({', '.join(self.models)})")
        created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        path = save(module, self.export_dir, self.version,
                    {"run_id": self.run_id, "version": self.version, "models": self.models,
                     "created": created})
        self.written[module.model_name] = path
        return path


@contextlib.contextmanager
def release(export_dir: str, models: Sequence[str], version: int | None = None,
            run_id: str = "", base_path: str = CONTAINER_BASE_PATH, supersede: bool = False,
            log=print):
    """Publish `models` as one version: `with release(...) as r: r.save(module) …`; on leaving
    the block models.config pins all of them at once (`r.version`, `r.config_path`).

    One release at a time per export folder (a lock, taken over from a killed process). Models
    of another run pinned in models.config are refused up front (a ValueError naming them), or,
    with `supersede` (new encoders replace a run), left out of models.config with a line saying
    so. If the block fails, what it wrote is removed and models.config stays as it was.
    """
    from keras_instance.run_folder import exclusive  # the same lock as a run folder's
    os.makedirs(export_dir, exist_ok=True)
    with exclusive(export_dir, log):
        clean_leftovers(export_dir, log)
        pins = pinned_versions(export_dir)
        others = {m: v for m, v in pins.items() if m not in models}
        stale = {m: v for m, v in others.items()
                 if run_id and release_run(export_dir, m, v) not in ("", run_id)}
        if stale and not supersede:
            named = ", ".join(f"{m} {v}" for m, v in sorted(stale.items()))
            raise ValueError(
                f"{export_dir}/{MODELS_CONFIG} serves {named} from another run than this one "
                f"({run_id}): one models.config never mixes runs (their embeddings differ). "
                "Export this run's encoders first (keras_instance.cli.export), or write into "
                "another --export_dir")
        version = claim_version(export_dir, models, version)
        _write_json(os.path.join(export_dir, PENDING), {"models": list(models),
                                                        "version": version})
        current = Release(export_dir, models, version, run_id)
        try:
            yield current
            missing = [m for m in models if m not in current.written]
            if missing:
                raise ValueError(f"release {version} wrote no {', '.join(missing)}")
            for m in sorted(stale):
                log(f"{m} {stale[m]} left out of models.config: it belongs to another run "
                    "(rebuild it from this run with keras_instance.cli.index)")
                others.pop(m)
            current.config_path = write_models_config(
                export_dir, base_path, {**others, **{m: version for m in models}})
        except BaseException:
            for path in current.written.values():
                shutil.rmtree(path, ignore_errors=True)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(export_dir, PENDING))


def clean_leftovers(export_dir: str, log=print) -> None:
    """Remove what a killed release left: `.tmp-*` folders and its version folders that
    models.config never pinned. Call with the export folder's lock held."""
    pending = os.path.join(export_dir, PENDING)
    pins = pinned_versions(export_dir)
    if os.path.exists(pending):
        try:
            with open(pending) as f:
                killed = json.load(f)
        except ValueError:
            killed = {"models": [], "version": None}
        for model in killed.get("models", []):
            folder = os.path.join(export_dir, model, str(killed["version"]))
            if os.path.isdir(folder) and pins.get(model) != killed["version"]:
                shutil.rmtree(folder)
                log(f"removed {folder}: a release killed before models.config pinned it")
        os.remove(pending)
    for model in os.listdir(export_dir):
        folder = os.path.join(export_dir, model)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                log(f"removed {os.path.join(folder, name)}: left by a killed export")


def release_run(export_dir: str, model: str, version: int) -> str:
    """The run id a version was released from ("" for versions from before releases)."""
    path = os.path.join(export_dir, model, str(version), RELEASE_FILE)
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return json.load(f).get("run_id", "")


def pinned_versions(export_dir: str) -> dict[str, int]:
    """model → the version models.config serves: its pinned one, else (a config from before
    pins, or none) the newest folder, as TF Serving's default `latest` policy serves."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    path = os.path.join(export_dir, MODELS_CONFIG)
    if not os.path.exists(path):
        return {}
    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    pins = {}
    for entry in config.model_config_list.config:
        versions = list(entry.model_version_policy.specific.versions)
        found = existing_versions(os.path.join(export_dir, entry.name))
        if versions:
            pins[entry.name] = max(versions)
        elif found:
            pins[entry.name] = found[-1]
    return pins


def _write_json(path: str, value) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


# --- models.config --------------------------------------------------------------------------

def models_config(names: Iterable[str], base_path: str = CONTAINER_BASE_PATH,
                  pins: dict[str, int] | None = None):
    """ModelServerConfig listing `names`, each at `base_path/<name>` (the container's path),
    pinned to `pins[name]` where given."""
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
        if pins and name in pins:
            entry.model_version_policy.specific.versions.append(int(pins[name]))
    return config


def exported_models(export_dir: str) -> list[str]:
    """Model folders of `export_dir` holding at least one version."""
    return sorted(n for n in os.listdir(export_dir)
                  if os.path.isdir(os.path.join(export_dir, n))
                  and existing_versions(os.path.join(export_dir, n)))


def write_models_config(export_dir: str, base_path: str = CONTAINER_BASE_PATH,
                        pins: dict[str, int] | None = None) -> str:
    """`export_dir/models.config` in one rename: with `pins`, exactly those models at those
    versions (a release's); without, every exported model at its newest version."""
    from google.protobuf import text_format
    path = os.path.join(export_dir, MODELS_CONFIG)
    if pins is None:
        pins = {m: existing_versions(os.path.join(export_dir, m))[-1]
                for m in exported_models(export_dir)}
    body = ("# TF Serving model config: base paths are inside the tensorflow/serving container,\n"
            f"# where this folder is mounted at {base_path}. Each model is pinned to one version:\n"
            "# a release switches them all at once by replacing this file.\n"
            + text_format.MessageToString(models_config(sorted(pins), base_path, pins)))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)
    return path
