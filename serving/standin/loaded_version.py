"""One loaded SavedModel version: its signatures, Predict on them, and the warmup replay.

Predict checks the request against the signature first (input names, dtypes, shapes, output
filter), so a wrong request is an INVALID_ARGUMENT saying what to send, not a TensorFlow trace.
"""
from __future__ import annotations

import os

import grpc
import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving.constants import DEFAULT_SIGNATURE, WARMUP_FILE
from serving.standin.errors import ServingError, braced

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


class LoadedVersion:
    """One loaded SavedModel version: its signatures and their SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.module = tf.saved_model.load(path, tags=["serve"])
        self.signatures = dict(self.module.signatures)
        self.signature_defs = read_signature_defs(path)
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
                f"len({braced(sent)}) != len({braced(expected)}). Sent extra: "
                f"{braced(sent - expected)}. Missing but required: {braced(expected - sent)}.")
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
                               f"output_filter names {braced(unknown)} not in the signature's "
                               f"outputs {braced(outputs)}")
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


def read_signature_defs(path: str) -> dict:
    """The serving MetaGraph's SignatureDefs, as GetModelMetadata answers them."""
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


def import_tensorflow_text() -> None:
    """Registers TF Text's ops, which the exported text graph uses, before anything loads."""
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        logging.warning("tensorflow_text is not installed: models using its ops will not load")
