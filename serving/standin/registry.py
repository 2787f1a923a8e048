"""The configured models and their loaded versions: which versions to load (version policy),
loading and unloading them, and finding the one a request's ModelSpec names (version, label).

`sync()` brings the loaded versions in line with the folders on disk; poller.py calls it on a
timer, HandleReloadConfigRequest after a new config. Lookups answer NOT_FOUND / INVALID_ARGUMENT
as TF Serving does.
"""
from __future__ import annotations

import threading
import time

import grpc
import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving.constants import CONTAINER_MODELS_ROOT
from serving.standin.errors import ServingError, clean_tf_message
from serving.standin.loaded_version import LoadedVersion, import_tensorflow_text
from serving.standin.model_config import ModelServerConfig, checked_entries, map_base_path
from serving.standin.request_guard import NATIVE, next_number
from serving.standin.version_folders import scan_versions, version_mtime

State = get_model_status_pb2.ModelVersionStatus.State
OK_CODE = 0


def aspired_versions(policy, available: list[int]) -> list[int]:
    """The versions a ServableVersionPolicy wants loaded, newest first (default: the newest)."""
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
    """The configured models and their loaded versions; thread-safe."""

    def __init__(self, config: ModelServerConfig, models_root: str | None = None,
                 base_path_prefix: str = CONTAINER_MODELS_ROOT, enable_warmup: bool = True):
        self.models_root = models_root
        self.base_path_prefix = base_path_prefix
        self.enable_warmup = enable_warmup
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict[str, ModelState] = {}
        import_tensorflow_text()
        self.set_config(config)

    # -- configuration
    def set_config(self, config: ModelServerConfig) -> None:
        """Serves the models `config` lists (ValueError, nothing changed, if it is unusable);
        a model whose base path is unchanged keeps its loaded versions."""
        entries = checked_entries(config)
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

    # -- loading
    def sync(self) -> None:
        """Loads and unloads versions as the policies say, for the folders on disk now."""
        with self._load_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                try:
                    self._sync_model(model)
                except Exception:  # never let one model stop the others
                    logging.exception("polling model %s failed", model.name)

    def _sync_model(self, model: ModelState) -> None:
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
            mtime = version_mtime(path)
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
            with NATIVE.request(f"load-{next_number()}",
                                f"loading {model.name} version {version} from {path}"):
                loaded = LoadedVersion(model.name, version, path)
                warmed = loaded.warm_up() if self.enable_warmup else 0
        except Exception as e:  # noqa: BLE001 — a bad version is reported, never fatal
            is_tf = isinstance(e, tf.errors.OpError)
            code = e.error_code if is_tf else grpc.StatusCode.UNKNOWN.value[0]
            detail = clean_tf_message(e.message) if is_tf else " ".join(str(e).split())
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

    # -- lookups used by the APIs
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
        """Every version's state (or the one the spec names), with its load error if any."""
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
        """The signature_def map, packed in the metadata's Any as TF Serving packs it."""
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
