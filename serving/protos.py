"""TF Serving's gRPC protos without importing TensorFlow, so a client call starts in ~0.3 s.

tensorflow-serving-api's `*_pb2` modules import `tensorflow.core.framework.tensor_pb2` and
friends: plain protobuf modules, but importing them runs `tensorflow/__init__.py` first (5 s and
1 GB of memory). When TensorFlow is not loaded yet, the `tensorflow` package is stood in for by an
empty package on the same folder while the protos import, then removed again, so a later `import
tensorflow` runs as usual: it re-executes the same `*_pb2` files, which find their descriptors
already in protobuf's default pool and get the very same message classes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_MODULES = {
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
}
_lock = threading.Lock()


def _import_all() -> dict[str, types.ModuleType]:
    return {short: importlib.import_module(full) for short, full in _MODULES.items()}


def import_protos() -> dict[str, types.ModuleType]:
    """{short name: module} for `_MODULES`, without running `tensorflow/__init__.py`."""
    with _lock:
        if "tensorflow" in sys.modules:  # loaded (or loading) already: nothing to save
            return _import_all()
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            return _import_all()  # no TensorFlow: let the import fail with its own message
        package = types.ModuleType("tensorflow", "placeholder while serving.protos imports")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["tensorflow"] = package
        try:
            return _import_all()
        finally:
            for name in [n for n in sys.modules if n == "tensorflow" or
                         n.startswith("tensorflow.")]:
                del sys.modules[name]


_loaded = import_protos()
get_model_metadata_pb2 = _loaded["get_model_metadata_pb2"]
get_model_status_pb2 = _loaded["get_model_status_pb2"]
model_service_pb2_grpc = _loaded["model_service_pb2_grpc"]
predict_pb2 = _loaded["predict_pb2"]
prediction_service_pb2_grpc = _loaded["prediction_service_pb2_grpc"]
tensor_pb2 = _loaded["tensor_pb2"]
types_pb2 = _loaded["types_pb2"]
