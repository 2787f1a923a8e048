"""A stand-in for TF Serving, for machines where `tensorflow/serving` cannot run.

    python -m serving.standin_server --model_config exports/models.config --port 8500 \
        [--rest_port 8501]

PRODUCTION RUNS tensorflow/serving (serving/README.md). This process answers the same gRPC API
with the same protos (tensorflow-serving-api), so `serving.client`, tests and benchmarks run
unchanged against either:

* PredictionService.Predict and GetModelMetadata (signature_def packed as a SignatureDefMap in
  the metadata's Any, as TF Serving does); ModelService.GetModelStatus and
  HandleReloadConfigRequest. Classify/Regress/MultiInference answer UNIMPLEMENTED.
* Reads a ModelServerConfig text proto. base_path there is the container path (`/models/<name>`);
  `--model_base_path_prefix` (default /models) is replaced by `--models_root` (default: the folder
  holding the config). Version policies `latest` (default: newest 1), `all`, `specific`, and
  `version_labels` behave as in TF Serving.
* Version folders are integers holding saved_model.pb; the folders are polled every
  `--file_system_poll_wait_seconds` and a new version is loaded (and warmed up from
  assets.extra/tf_serving_warmup_requests) without restart. The old version keeps serving until
  the new one is available; a version that fails to load is reported in GetModelStatus and the
  previous one keeps serving.
* Errors are gRPC statuses, as TF Serving gives them: unknown model or version → NOT_FOUND;
  unknown version label, wrong input names, dtypes or shapes, undecodable tensors, and
  InvalidArgumentError raised by the model → INVALID_ARGUMENT with the message; other TensorFlow
  errors keep their code; anything unexpected → INTERNAL. A bad request never stops the server.
* Each failed request is logged as one line: `predict #N MODEL, inputs NAME: DTYPE[SHAPE] failed:
  CODE: message`. Native stderr (libjpeg's "Unsupported marker type 0x14" while decoding a corrupt
  JPEG, TF C++ logs) is printed with the request that was running (serving/native_stderr.py;
  `--noannotate_native_stderr` leaves it raw).
* REST (`--rest_port`): GET /v1/models/NAME[/versions/V|/labels/L][/metadata], POST
  /v1/models/NAME[...]:predict with the `instances` (row) or `inputs` (columnar) forms and
  {"b64": ...} for bytes; GET /monitoring/prometheus/metrics (request counts).

Not implemented: server-side batching (`--enable_batching` belongs to tensorflow/serving),
Classify/Regress/MultiInference, SessionService, custom model platforms.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import http.server
import itertools
import json
import os
import re
import sys
import threading
import time

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs

import grpc
import numpy as np
from absl import logging
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_log_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

import tensorflow as tf  # noqa: E402  (after the protos, which import it anyway)
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

from serving.native_stderr import NativeStderr  # noqa: E402

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
State = get_model_status_pb2.ModelVersionStatus.State
OK_CODE = 0
# Native stderr (libjpeg's "Unsupported marker type ...") printed with the request that caused
# it; active once main() has called NATIVE.capture().
NATIVE = NativeStderr()
_request_ids = itertools.count(1)


class ServingError(Exception):
    """A request failure with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def clean_tf_message(message: str) -> str:
    """The part of a TensorFlow error message that says what is wrong, on one line.

    Eager calls wrap a kernel's message in "Graph execution error: Detected at node ... defined
    at (most recent call last): <stack traces>" and append "[Op:__inference_...]"; TF Serving
    answers with the kernel's message and node, which is what this keeps.
    """
    keep, skipping_stack = [], False
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped or stripped == "Graph execution error:":
            continue
        if stripped.startswith("Detected at node"):
            skipping_stack = True
            continue
        if skipping_stack and (stripped.startswith("File ") or stripped.startswith("<stack")
                               or line.startswith("  ")):
            continue
        skipping_stack = False
        keep.append(stripped)
    text = re.sub(r"\s*\[Op:__inference_[^\]]*\]", "", " ".join(keep)).strip()
    return text or message.strip()


def _grpc_code_from_tf(error: tf.errors.OpError) -> grpc.StatusCode:
    # TensorFlow's error codes are gRPC's status codes, number for number.
    for code in grpc.StatusCode:
        if code.value[0] == error.error_code:
            return code
    return grpc.StatusCode.UNKNOWN


# ------------------------------------------------------------------------------------ config

def parse_model_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(text, config)
    return config


def load_model_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    with open(path) as f:
        return parse_model_config(f.read())


def map_base_path(base_path: str, models_root: str | None, prefix: str = "/models") -> str:
    """Maps the container's base_path (`/models/<name>`) to `models_root/<name>` on this host."""
    if models_root:
        prefix = prefix.rstrip("/") or "/"
        if base_path == prefix or base_path.startswith(prefix + "/"):
            return os.path.join(models_root, base_path[len(prefix):].lstrip("/"))
    return base_path


# ------------------------------------------------------------------------------------ models

class LoadedVersion:
    """One loaded SavedModel version: its signatures and their SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.module = tf.saved_model.load(path, tags=["serve"])
        self.signatures = dict(self.module.signatures)
        self.signature_defs = _read_signature_defs(path)
        self.input_specs = {}
        for key, fn in self.signatures.items():
            _, kwargs = fn.structured_input_signature
            self.input_specs[key] = dict(kwargs)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        fn = self.signatures.get(signature_name)
        if fn is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        specs = self.input_specs[signature_name]
        sent, expected = set(request.inputs), set(specs)
        if sent != expected:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({_names(sent)}) != len({_names(expected)}). Sent extra: "
                f"{_names(sent - expected)}. Missing but required: {_names(expected - sent)}.")
        feeds = {}
        for name, spec in specs.items():
            proto = request.inputs[name]
            if proto.dtype != spec.dtype.as_datatype_enum:
                sent_dtype = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "DT_INVALID"
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input '{name}': expects {spec.dtype.name} but {sent_dtype} "
                                   f"is provided")
            try:
                value = tf.make_ndarray(proto)
            except Exception as e:  # wrong tensor_content length, bad shapes, ...
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input '{name}' could not be decoded: {e}") from e
            if not spec.shape.is_compatible_with(value.shape):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input '{name}': shape {list(value.shape)} is incompatible "
                                   f"with the signature's {spec.shape}")
            feeds[name] = tf.constant(value, dtype=spec.dtype)
        outputs = fn(**feeds)
        wanted = list(request.output_filter) or sorted(outputs)
        unknown = [name for name in wanted if name not in outputs]
        if unknown:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output_filter names {_names(unknown)} not in the signature's "
                               f"outputs {_names(outputs)}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
        return response

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests (PredictionLog records), as TF Serving
        does before a version becomes available; any failure fails the load."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log.HasField("predict_log"):
                raise ValueError(f"warmup record {count}: only predict_log is supported here")
            self.predict(log.predict_log.request)
            count += 1
        return count


def _names(names) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _read_signature_defs(path: str) -> dict:
    pb = os.path.join(path, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    if os.path.exists(pb):
        with open(pb, "rb") as f:
            saved.ParseFromString(f.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt")) as f:
            text_format.Parse(f.read(), saved)
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return dict(saved.meta_graphs[0].signature_def) if saved.meta_graphs else {}


def scan_versions(base_path: str) -> dict[int, str]:
    """Integer-named subfolders holding a SavedModel (half-written folders have no .pb yet)."""
    versions = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return versions
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and (
                os.path.exists(os.path.join(entry.path, "saved_model.pb"))
                or os.path.exists(os.path.join(entry.path, "saved_model.pbtxt"))):
            versions[int(entry.name)] = entry.path
    return versions


def aspired_versions(policy, available: list[int]) -> list[int]:
    """The versions a ServableVersionPolicy wants loaded, newest first."""
    available = sorted(available, reverse=True)
    which = policy.WhichOneof("policy_choice") if policy is not None else None
    if which == "all":
        return available
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in available if v in wanted]
    num = policy.latest.num_versions if which == "latest" and policy.latest.num_versions else 1
    return available[:num]


class ModelState:
    """Everything known about one configured model."""

    def __init__(self, config, base_path: str):
        self.config = config
        self.base_path = base_path
        self.loaded: dict[int, LoadedVersion] = {}
        # version → (state, error code, error message), for GetModelStatus
        self.status: dict[int, tuple[int, int, str]] = {}
        self.failed: dict[int, float] = {}  # version → saved_model.pb mtime of the failed try

    @property
    def name(self) -> str:
        return self.config.name


class ModelRegistry:
    """The configured models, their loaded versions, and the polling that keeps them current."""

    def __init__(self, config_path: str | None = None, models_root: str | None = None,
                 base_path_prefix: str = "/models", enable_warmup: bool = True,
                 config: model_server_config_pb2.ModelServerConfig | None = None):
        self.config_path = config_path
        self.models_root = models_root
        self.base_path_prefix = base_path_prefix
        self.enable_warmup = enable_warmup
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict[str, ModelState] = {}
        self._config_mtime = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        _import_tensorflow_text()
        if config is None:
            if not config_path:
                raise ValueError("give a model config file or a config")
            config = load_model_config(config_path)
            self._config_mtime = os.path.getmtime(config_path)
        self.set_config(config)

    # -- configuration
    def set_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        which = config.WhichOneof("config")
        if which == "custom_model_config":
            raise ValueError("custom_model_config is not supported; use model_config_list")
        entries = list(config.model_config_list.config)
        names = [c.name for c in entries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models listed twice in the config: {duplicates}")
        for c in entries:
            if not c.name or not c.base_path:
                raise ValueError(f"every model needs a name and a base_path: {c}")
            if c.model_platform and c.model_platform != "tensorflow":
                raise ValueError(f"model {c.name}: platform {c.model_platform!r} is not supported")
        with self._lock:
            new = {}
            for c in entries:
                base = map_base_path(c.base_path, self.models_root, self.base_path_prefix)
                old = self._models.get(c.name)
                if old is not None and old.base_path == base:
                    old.config = c
                    new[c.name] = old
                else:
                    new[c.name] = ModelState(c, base)
            self._models = new
        for c in entries:
            logging.info("model %s: %s", c.name, new[c.name].base_path)

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    # -- polling
    def poll(self) -> None:
        """Re-reads the config (if asked to) and loads/unloads versions as the policies say."""
        with self._load_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                try:
                    self._poll_model(model)
                except Exception:  # never let one model stop the poller
                    logging.exception("polling model %s failed", model.name)

    def _poll_model(self, model: ModelState) -> None:
        on_disk = scan_versions(model.base_path)
        if not on_disk and not model.status:
            logging.log_first_n(logging.WARNING, "no versions of %s found under %s", 20,
                                model.name, model.base_path)
        aspired = aspired_versions(model.config.model_version_policy
                                   if model.config.HasField("model_version_policy") else None,
                                   list(on_disk))
        for version in aspired:  # newest first
            if version in model.loaded:
                continue
            path = on_disk[version]
            mtime = _model_mtime(path)
            if model.failed.get(version) == mtime:
                continue  # failed before and unchanged since: don't retry every poll
            self._load(model, version, path, mtime)
        # Availability-preserving: drop versions no longer aspired only once one aspired version
        # is serving (or the folder is gone).
        serving = any(v in model.loaded for v in aspired)
        for version in list(model.loaded):
            if version not in aspired and (serving or version not in on_disk):
                with self._lock:
                    model.loaded.pop(version, None)
                    model.status[version] = (State.END, OK_CODE, "")
                logging.info("model %s: unloaded version %d", model.name, version)

    def _load(self, model: ModelState, version: int, path: str, mtime: float) -> None:
        with self._lock:
            model.status[version] = (State.LOADING, OK_CODE, "")
        start = time.perf_counter()
        try:
            with NATIVE.request(f"load-{next(_request_ids)}",
                                f"loading {model.name} version {version} from {path}"):
                loaded = LoadedVersion(model.name, version, path)
                warmed = loaded.warm_up() if self.enable_warmup else 0
        except Exception as e:
            code = e.error_code if isinstance(e, tf.errors.OpError) else grpc.StatusCode.UNKNOWN.value[0]
            detail = clean_tf_message(e.message) if isinstance(e, tf.errors.OpError) else \
                " ".join(str(e).split())
            message = f"Loading servable: {model.name} version {version} failed: {detail}"
            logging.error("%s", message)
            with self._lock:
                model.status[version] = (State.END, code, message)
                model.failed[version] = mtime
            return
        with self._lock:
            model.loaded[version] = loaded
            model.status[version] = (State.AVAILABLE, OK_CODE, "")
            model.failed.pop(version, None)
        logging.info("model %s: version %d available (%.1f s, %d warmup requests) from %s",
                     model.name, version, time.perf_counter() - start, warmed, path)

    def reload_config_if_changed(self) -> bool:
        """Re-reads the config file when it changed; a bad file keeps the previous config."""
        if not self.config_path:
            return False
        try:
            mtime = os.path.getmtime(self.config_path)
        except OSError as e:
            logging.error("keeping the previous model config: %s", e)
            return False
        if mtime == self._config_mtime:
            return False
        self._config_mtime = mtime
        try:
            self.set_config(load_model_config(self.config_path))
        except Exception as e:  # noqa: BLE001 — a half-edited file must not stop the server
            logging.error("keeping the previous model config: %s: %s", self.config_path, e)
            return False
        logging.info("re-read %s", self.config_path)
        return True

    def start(self, poll_seconds: float, config_poll_seconds: float = 0) -> None:
        def loop(interval, step):
            while not self._stop.wait(interval):
                try:
                    step()
                except Exception:
                    logging.exception("poller step failed")
        if poll_seconds > 0:
            self._threads.append(threading.Thread(target=loop, args=(poll_seconds, self.poll),
                                                  name="version-poller", daemon=True))
        if config_poll_seconds > 0 and self.config_path:
            def reload_and_poll():
                if self.reload_config_if_changed():
                    self.poll()
            self._threads.append(threading.Thread(target=loop,
                                                  args=(config_poll_seconds, reload_and_poll),
                                                  name="config-poller", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()

    # -- lookups used by the services
    def _model(self, name: str) -> ModelState:
        with self._lock:
            model = self._models.get(name)
        if model is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        return model

    def resolve(self, model_spec) -> LoadedVersion:
        """The loaded version a ModelSpec asks for (latest when it names none)."""
        model = self._model(model_spec.name)
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            if choice == "version":
                version = model_spec.version.value
                loaded = model.loaded.get(version)
                if loaded is None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: "
                                       f"Specific({model.name}, {version})")
                return loaded
            if choice == "version_label":
                label = model_spec.version_label
                labels = dict(model.config.version_labels)
                if label not in labels:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Unrecognized servable version label: {label}")
                loaded = model.loaded.get(labels[label])
                if loaded is None:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: "
                                       f"Specific({model.name}, {labels[label]}) "
                                       f"(label '{label}')")
                return loaded
            if not model.loaded:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({model.name})")
            return model.loaded[max(model.loaded)]

    def status(self, model_spec) -> get_model_status_pb2.GetModelStatusResponse:
        model = self._model(model_spec.name)
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            statuses = dict(model.status)
            labels = dict(model.config.version_labels)
        if choice == "version_label":
            if model_spec.version_label not in labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: "
                                   f"{model_spec.version_label}")
            wanted = [labels[model_spec.version_label]]
        elif choice == "version":
            wanted = [model_spec.version.value]
        else:
            wanted = sorted(statuses)
        wanted = [v for v in wanted if v in statuses]
        if not wanted:
            which = f" version {model_spec.version.value}" if choice == "version" else ""
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find{which or ' any'} version"
                               f"{'' if which else 's'} of model {model.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in wanted:
            state, code, message = statuses[version]
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = state
            entry.status.error_code = code
            entry.status.error_message = message
        return response

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {field} is not supported")
        loaded = self.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = loaded.name
        response.model_spec.version.value = loaded.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in loaded.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(sig)
        response.metadata["signature_def"].Pack(signature_map)
        return response


def _model_mtime(path: str) -> float:
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        p = os.path.join(path, name)
        if os.path.exists(p):
            return os.path.getmtime(p)
    return 0.0


# ------------------------------------------------------------------------------------ metrics

class Metrics:
    """Request counters in Prometheus text format (a small subset of TF Serving's)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._latency = collections.Counter()

    def record(self, api: str, model: str, code: grpc.StatusCode, seconds: float) -> None:
        with self._lock:
            self._counts[(api, model, code.name)] += 1
            self._latency[(api, model)] += seconds

    def text(self) -> str:
        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (api, model, status), n in sorted(self._counts.items()):
                lines.append(f':tensorflow:serving:request_count{{api="{api}",'
                             f'model_name="{model}",status="{status}"}} {n}')
            lines.append("# TYPE :tensorflow:serving:request_latency_seconds_sum counter")
            for (api, model), s in sorted(self._latency.items()):
                lines.append(f':tensorflow:serving:request_latency_seconds_sum{{api="{api}",'
                             f'model_name="{model}"}} {s:.6f}')
        return "\n".join(lines) + "\n"


def _call(fn, metrics: Metrics | None, api: str, model: str, what: str = ""):
    """Runs one request: returns (response, None) or (None, ServingError). Never raises.

    Each request gets a number; a failure is logged as one line naming it, its model and inputs
    (`what`) and the error, and native stderr written meanwhile carries the same words."""
    start = time.perf_counter()
    number = next(_request_ids)
    description = f"{api} #{number} {what or model or ''}".strip()
    try:
        with NATIVE.request(str(number), description):
            result, error = fn(), None
    except ServingError as e:
        result, error = None, e
    except tf.errors.OpError as e:
        result, error = None, ServingError(_grpc_code_from_tf(e), clean_tf_message(e.message))
    except (TypeError, ValueError) as e:  # the signature refused the inputs
        result, error = None, ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    except Exception as e:  # noqa: BLE001 — the server must survive any request
        logging.exception("unexpected error in %s", description)
        result, error = None, ServingError(grpc.StatusCode.INTERNAL,
                                           f"{type(e).__name__}: {e}")
    if error is not None:
        logging.warning("%s failed: %s: %s", description, error.code.name,
                        " ".join(error.message.split())[:500])
    if metrics is not None:
        metrics.record(api, model, error.code if error else grpc.StatusCode.OK,
                       time.perf_counter() - start)
    return result, error


def describe_request(request) -> str:
    """'image_encoder version 2, inputs images: string[3]': model, version choice and inputs.
    Never raises (it runs before `_call` guards the request)."""
    try:
        return _describe(request)
    except Exception:  # noqa: BLE001 — a description must not fail a request
        return "(undescribable request)"


def _describe(request) -> str:
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    words = spec.name + (f" version {spec.version.value}" if choice == "version" else
                         f" label {spec.version_label}" if choice == "version_label" else "")
    if spec.signature_name and spec.signature_name != DEFAULT_SIGNATURE:
        words += f" signature {spec.signature_name}"
    inputs = getattr(request, "inputs", None)
    if inputs:
        words += ", inputs " + ", ".join(
            f"{name}: {_dtype_name(t.dtype)}{[d.size for d in t.tensor_shape.dim]}"
            for name, t in sorted(inputs.items()))
    return words


def _dtype_name(dtype: int) -> str:
    try:
        return tf.dtypes.as_dtype(dtype).name
    except (TypeError, ValueError):
        return f"dtype {dtype}"


# ------------------------------------------------------------------------------------ gRPC

class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None):
        self.registry, self.metrics = registry, metrics

    def Predict(self, request, context):
        result, error = _call(lambda: self.registry.resolve(request.model_spec).predict(request),
                              self.metrics, "predict", request.model_spec.name,
                              describe_request(request))
        return _reply(context, result, error, predict_pb2.PredictResponse)

    def GetModelMetadata(self, request, context):
        result, error = _call(lambda: self.registry.metadata(request), self.metrics,
                              "metadata", request.model_spec.name, describe_request(request))
        return _reply(context, result, error, get_model_metadata_pb2.GetModelMetadataResponse)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None):
        self.registry, self.metrics = registry, metrics

    def GetModelStatus(self, request, context):
        result, error = _call(lambda: self.registry.status(request.model_spec), self.metrics,
                              "status", request.model_spec.name, describe_request(request))
        return _reply(context, result, error, get_model_status_pb2.GetModelStatusResponse)

    def HandleReloadConfigRequest(self, request, context):
        def reload():
            self.registry.set_config(request.config)
            self.registry.poll()
            return model_management_pb2.ReloadConfigResponse()
        result, error = _call(reload, self.metrics, "reload", "")
        if error is None:
            return result
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = error.code.value[0]
        response.status.error_message = error.message
        return response


def _reply(context, result, error, empty_type):
    if error is None:
        return result
    context.set_code(error.code)
    context.set_details(error.message)
    return empty_type()


def build_grpc_server(registry: ModelRegistry, host: str = "127.0.0.1", port: int = 8500,
                      max_workers: int = 16, max_message_mb: int = 2047,
                      metrics: Metrics | None = None):
    """A started-not gRPC server; returns (server, bound port)."""
    limit = max_message_mb * 1024 * 1024 if max_message_mb > 0 else -1
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                              thread_name_prefix="grpc"),
        options=[("grpc.max_send_message_length", limit),
                 ("grpc.max_receive_message_length", limit),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(registry, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(registry, metrics), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound


# ------------------------------------------------------------------------------------ REST

_HTTP_FROM_GRPC = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500,
}
_MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                         r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                         r"(?P<rest>/metadata|:[a-zA-Z]+)?/?$")


def _bad(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _json_to_array(value, dtype: tf.DType, name: str) -> np.ndarray:
    """JSON value → array of the signature's dtype; strings UTF-8, {"b64": ...} decoded."""
    if dtype == tf.string:
        def convert(v):
            if isinstance(v, list):
                return [convert(x) for x in v]
            if isinstance(v, dict):
                if set(v) != {"b64"} or not isinstance(v["b64"], str):
                    raise _bad(f"input '{name}': objects must be {{\"b64\": \"...\"}}")
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except ValueError as e:
                    raise _bad(f"input '{name}': bad base64: {e}") from e
            if isinstance(v, str):
                return v.encode("utf-8")
            raise _bad(f"input '{name}': expects strings, got {type(v).__name__} {v!r:.40}")
        converted = convert(value)
        try:
            array = np.array(converted, dtype=object)
        except ValueError as e:
            raise _bad(f"input '{name}': ragged or malformed list: {e}") from e
        if array.dtype != object or any(not isinstance(x, bytes) for x in array.flat):
            raise _bad(f"input '{name}': ragged or malformed list of strings")
        return array
    try:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError) as e:
        raise _bad(f"input '{name}': cannot convert to {dtype.name}: {e}") from e


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _rest_predict_request(loaded: LoadedVersion, body: dict, signature_name: str):
    """Builds a PredictRequest from TF Serving's REST body; returns (request, row_format)."""
    specs = loaded.input_specs.get(signature_name)
    if specs is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{signature_name}" not found.')
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise _bad("Missing 'inputs' or 'instances' key" if not has_instances else
                   "Not allowed to have both 'inputs' and 'instances' keys")
    columns: dict[str, object] = {}
    if has_instances:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise _bad("'instances' must be a list")
        named = bool(instances) and all(isinstance(x, dict) and not _is_b64(x) for x in instances)
        if named:
            keys = set(instances[0])
            if any(set(x) != keys for x in instances):
                raise _bad("every instance must have the same named inputs")
            columns = {k: [x[k] for x in instances] for k in keys}
        else:
            if len(specs) != 1:
                raise _bad(f"the signature has inputs {_names(specs)}: send each instance as "
                           f"an object naming them")
            columns = {next(iter(specs)): instances}
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = dict(inputs)
        else:
            if len(specs) != 1:
                raise _bad(f"the signature has inputs {_names(specs)}: send 'inputs' as an "
                           f"object naming them")
            columns = {next(iter(specs)): inputs}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = loaded.name
    request.model_spec.version.value = loaded.version
    request.model_spec.signature_name = signature_name
    for name, value in columns.items():
        spec = specs.get(name)
        dtype = spec.dtype if spec is not None else tf.float32  # unknown name: rejected later
        request.inputs[name].CopyFrom(tf.make_tensor_proto(_json_to_array(value, dtype, name)))
    return request, has_instances


def _array_to_json(name: str, array: np.ndarray):
    if array.dtype == object:
        def convert(v):
            if isinstance(v, bytes):
                if name.endswith("_bytes"):
                    return {"b64": base64.b64encode(v).decode("ascii")}
                try:
                    return v.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(v).decode("ascii")}
            return v
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else \
            array.tolist()
    return array.tolist()


def rest_predict_body(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _array_to_json(*next(iter(outputs.items())))}
        return {"outputs": {n: _array_to_json(n, a) for n, a in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": _array_to_json(*next(iter(outputs.items())))}
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise _bad("outputs differ in their 0th dimension: ask with 'inputs' (columnar) instead")
    (size,) = sizes
    columns = {n: _array_to_json(n, a) for n, a in outputs.items()}
    return {"predictions": [{n: columns[n][i] for n in columns} for i in range(size)]}


def _message_dict(message) -> dict:
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # older protobuf
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


def make_rest_handler(registry: ModelRegistry, metrics: Metrics | None = None,
                      max_body_mb: int = 256):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin-tf-serving"

        def log_message(self, fmt, *args):  # route through absl, quietly
            logging.debug("REST %s", fmt % args)

        def _send(self, status: int, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else (
                json.dumps(body) + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, error: ServingError):
            self._send(_HTTP_FROM_GRPC.get(error.code.name, 500), {"error": error.message})

        def _route(self):
            path = self.path.split("?", 1)[0]
            match = _MODEL_PATH.match(path)
            if not match:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {path}")
            spec = predict_pb2.PredictRequest().model_spec
            spec.name = match["name"]
            if match["version"]:
                spec.version.value = int(match["version"])
            elif match["label"]:
                spec.version_label = match["label"]
            return spec, match["rest"] or ""

        def _handle(self, method: str):
            def work():
                if method == "GET" and self.path.split("?")[0].rstrip("/") == \
                        "/monitoring/prometheus/metrics":
                    return ("text", (metrics.text() if metrics else "").encode())
                spec, rest = self._route()
                if method == "GET" and rest == "":
                    return ("json", _message_dict(registry.status(spec)))
                if method == "GET" and rest == "/metadata":
                    request = get_model_metadata_pb2.GetModelMetadataRequest()
                    request.model_spec.CopyFrom(spec)
                    request.metadata_field.append("signature_def")
                    response = registry.metadata(request)
                    signature_map = get_model_metadata_pb2.SignatureDefMap()
                    response.metadata["signature_def"].Unpack(signature_map)
                    return ("json", {"model_spec": _message_dict(response.model_spec),
                                     "metadata": {"signature_def": _message_dict(signature_map)}})
                if method == "POST" and rest == ":predict":
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > max_body_mb * 1024 * 1024:
                        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                           f"request body over {max_body_mb} MB")
                    raw = self.rfile.read(length)
                    try:
                        body = json.loads(raw or b"{}")
                    except (ValueError, UnicodeDecodeError) as e:
                        raise _bad(f"JSON Parse error: {e}") from e
                    if not isinstance(body, dict):
                        raise _bad("the request body must be a JSON object")
                    signature_name = body.get("signature_name", DEFAULT_SIGNATURE)
                    if not isinstance(signature_name, str):
                        raise _bad("'signature_name' key must be a string value.")
                    loaded = registry.resolve(spec)
                    request, row_format = _rest_predict_request(loaded, body, signature_name)
                    return ("json", rest_predict_body(loaded.predict(request), row_format))
                if method == "POST" and rest in (":classify", ":regress"):
                    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                       f"{rest[1:]} is not implemented by the stand-in")
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Malformed request: {method} {self.path}")

            result, error = _call(work, metrics, "rest", "",
                                  f"{method} {self.path.split('?', 1)[0][:200]}")
            if error is not None:
                if method == "POST":  # drain an unread body so the connection stays usable
                    self.close_connection = True
                self._send_error(error)
                return
            kind, payload = result
            if kind == "text":
                self._send(200, payload, "text/plain; version=0.0.4")
            else:
                self._send(200, payload)

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

    return Handler


def build_rest_server(registry: ModelRegistry, host: str, port: int,
                      metrics: Metrics | None = None):
    httpd = http.server.ThreadingHTTPServer((host, port), make_rest_handler(registry, metrics))
    httpd.daemon_threads = True
    return httpd, httpd.server_address[1]


# ------------------------------------------------------------------------------------ program

def _import_tensorflow_text() -> None:
    # The exported text graph uses TF Text ops; they must be registered before loading.
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        logging.warning("tensorflow_text is not installed: models using its ops will not load")


def _define_flags():
    from absl import flags
    flags.DEFINE_string("model_config", None, "ModelServerConfig text proto (models.config).")
    flags.DEFINE_alias("model_config_file", "model_config")
    flags.DEFINE_string("model_name", None, "Without a config: serve this one model ...")
    flags.DEFINE_string("model_base_path", None, "... from this folder of versions.")
    flags.DEFINE_string("models_root", None,
                        "Local folder standing for the container's --model_base_path_prefix; "
                        "default: the folder holding the model config.")
    flags.DEFINE_string("model_base_path_prefix", "/models",
                        "base_path prefix in the config that --models_root replaces.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind (0.0.0.0 to serve others).")
    flags.DEFINE_integer("port", 8500, "gRPC port (0: any free port, printed at start).")
    flags.DEFINE_integer("rest_port", None, "REST port; unset: no REST (0: any free port).")
    flags.DEFINE_alias("rest_api_port", "rest_port")
    flags.DEFINE_float("file_system_poll_wait_seconds", 2.0,
                       "Seconds between scans for new versions (0: load once, never rescan).")
    flags.DEFINE_float("model_config_file_poll_wait_seconds", 0.0,
                       "Seconds between re-reads of the model config (0: never, as TF Serving).")
    flags.DEFINE_boolean("enable_model_warmup", True,
                         "Replay assets.extra/tf_serving_warmup_requests before serving.")
    flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0, "TF intra-op threads (0: auto).")
    flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0, "TF inter-op threads (0: auto).")
    flags.DEFINE_integer("grpc_max_threads", 16, "gRPC worker threads.")
    flags.DEFINE_integer("max_message_mb", 2047, "gRPC max message size in MiB (-1: no limit).")
    flags.DEFINE_boolean("annotate_native_stderr", True,
                         "Print native libraries' stderr (libjpeg's warnings, TF C++ logs) with "
                         "the request that was running (serving/native_stderr.py).")
    return flags.FLAGS


def main(argv):
    del argv
    f = FLAGS
    if f.annotate_native_stderr:
        NATIVE.capture()
    if f.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(f.tensorflow_intra_op_parallelism)
    if f.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(f.tensorflow_inter_op_parallelism)
    try:
        if f.model_config:
            root = f.models_root or os.path.dirname(os.path.abspath(f.model_config))
            registry = ModelRegistry(f.model_config, models_root=root,
                                     base_path_prefix=f.model_base_path_prefix,
                                     enable_warmup=f.enable_model_warmup)
        elif f.model_name and f.model_base_path:
            config = model_server_config_pb2.ModelServerConfig()
            entry = config.model_config_list.config.add()
            entry.name, entry.base_path = f.model_name, os.path.abspath(f.model_base_path)
            entry.model_platform = "tensorflow"
            registry = ModelRegistry(config=config, enable_warmup=f.enable_model_warmup)
        else:
            sys.exit("error: give --model_config (or --model_name and --model_base_path)")
    except (OSError, ValueError, text_format.ParseError) as e:
        sys.exit(f"error: cannot read the model config: {e}")
    registry.poll()  # like TF Serving, load what is there before answering
    metrics = Metrics()
    server, port = build_grpc_server(registry, f.host, f.port, f.grpc_max_threads,
                                     f.max_message_mb, metrics)
    server.start()
    print(f"standin_server: gRPC on {f.host}:{port}", flush=True)
    httpd = None
    if f.rest_port is not None:
        httpd, rest_port = build_rest_server(registry, f.host, f.rest_port, metrics)
        threading.Thread(target=httpd.serve_forever, name="rest", daemon=True).start()
        print(f"standin_server: REST on {f.host}:{rest_port}", flush=True)
    registry.start(f.file_system_poll_wait_seconds, f.model_config_file_poll_wait_seconds)
    print(f"standin_server: ready, models {registry.model_names()} "
          f"(stand-in; production runs tensorflow/serving)", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
        if httpd is not None:
            httpd.shutdown()
        server.stop(grace=2).wait()


if __name__ == "__main__":
    import signal

    from absl import app

    def _on_sigterm(signum, frame):  # docker stop, test teardown: stop as Ctrl-C does
        raise KeyboardInterrupt

    FLAGS = _define_flags()
    signal.signal(signal.SIGTERM, _on_sigterm)
    app.run(main)
