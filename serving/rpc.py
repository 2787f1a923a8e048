"""TF Serving's gRPC calls, without TensorFlow: channels, stubs, Predict, GetModelMetadata,
GetModelStatus, and one line saying what a failed call means.

`serving.client` (the program) and `serving.query` (the search API) are built on these; tests and
benchmarks call them directly. Every function raises grpc.RpcError as grpc gives it;
`describe_error` turns one into the line a user reads.
"""
from __future__ import annotations

import codecs
import re
from typing import Iterable, Mapping

import grpc
import numpy as np

from serving import tensors
from serving.constants import DEFAULT_SIGNATURE, GRPC_PORT
from serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

DEFAULT_SERVER = f"localhost:{GRPC_PORT}"
DEFAULT_DEADLINE_S = 10.0
DEFAULT_MAX_MESSAGE_MB = 64


def make_channel(server: str = DEFAULT_SERVER,
                 max_message_mb: float = DEFAULT_MAX_MESSAGE_MB) -> grpc.Channel:
    """An insecure channel whose send/receive limits are `max_message_mb` (gRPC's default: 4)."""
    limit = int(max_message_mb * 1024 * 1024) if max_message_mb > 0 else -1
    return grpc.insecure_channel(server, options=[("grpc.max_send_message_length", limit),
                                                  ("grpc.max_receive_message_length", limit)])


def prediction_stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def model_stub(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def fill_model_spec(spec, model: str, version: int | None, label: str | None,
                     signature_name: str | None = None) -> None:
    if version is not None and label:
        raise ValueError("give a version or a version label, not both")
    spec.name = model
    if version is not None:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label
    if signature_name is not None:
        spec.signature_name = signature_name


def to_tensor_proto(value):
    """A TensorProto from an array or a (nested) list; str is sent as UTF-8 bytes (DT_STRING)."""
    return tensors.to_tensor_proto(value)


def from_tensor_proto(proto) -> np.ndarray:
    """The numpy array of an output TensorProto (strings as bytes, in an object array)."""
    return tensors.from_tensor_proto(proto)


def predict_response(stub, model: str, inputs: Mapping[str, object], version: int | None = None,
                     label: str | None = None, timeout: float = DEFAULT_DEADLINE_S,
                     signature_name: str = DEFAULT_SIGNATURE,
                     output_filter: Iterable[str] = ()) -> predict_pb2.PredictResponse:
    """One Predict RPC; returns the raw PredictResponse (its model_spec names the version used).

    Raises grpc.RpcError on any server-side or transport error (see `describe_error`).
    """
    request = predict_pb2.PredictRequest()
    fill_model_spec(request.model_spec, model, version, label, signature_name)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return stub.Predict(request, timeout=timeout)


def predict(stub, model: str, inputs: Mapping[str, object], version: int | None = None,
            label: str | None = None, timeout: float = DEFAULT_DEADLINE_S,
            signature_name: str = DEFAULT_SIGNATURE,
            output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Predict: {input name: array or list} → {output name: np.ndarray} (strings as bytes)."""
    response = predict_response(stub, model, inputs, version, label, timeout, signature_name,
                                output_filter)
    return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}


def get_metadata(stub, model: str, version: int | None = None, label: str | None = None,
                 timeout: float = DEFAULT_DEADLINE_S):
    """GetModelMetadata → (served version, {signature name: SignatureDef})."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    fill_model_spec(request.model_spec, model, version, label)
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=timeout)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return response.model_spec.version.value, dict(signatures.signature_def)


def get_status(stub, model: str, version: int | None = None, label: str | None = None,
               timeout: float = DEFAULT_DEADLINE_S) -> list[dict]:
    """ModelService.GetModelStatus → [{version, state, error_code, error_message}], one per
    version."""
    request = get_model_status_pb2.GetModelStatusRequest()
    fill_model_spec(request.model_spec, model, version, label)
    response = stub.GetModelStatus(request, timeout=timeout)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [{"version": s.version, "state": state_name(s.state),
             "error_code": s.status.error_code, "error_message": s.status.error_message}
            for s in response.model_version_status]


# TensorFlow's annotations of where an op failed: "{{function_node __inference_...}}" before the
# message, "[[{{function_node ...}}{{node Assert/Assert}}]]" after it. The same in TF Serving's
# answers and the stand-in's; they name graph internals, not what the user sent.
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_NODE_REFS = re.compile(r"\s*\[\[(?:\{\{[^}]*\}\})+\]\]")
# tf.debugging.Assert's message: "assertion failed: [data] [data]", strings C-escaped.
_ASSERTION = re.compile(r"^assertion failed: \[(.*)\]$")


def tidy_details(details: str) -> str:
    """The server's error message on one line, as a user reads it: TensorFlow's node and
    function annotations left out, and a graph's `tf.debugging.Assert` text ("assertion
    failed: [k must be ...]", quotes escaped) as the message it was written as."""
    text = _NODE_REFS.sub("", _FUNCTION_NODE.sub("", details))
    text = " ".join(text.split())
    match = _ASSERTION.match(text)
    if match and "] [" not in match[1]:
        try:
            raw = codecs.escape_decode(match[1].encode("latin-1", "backslashreplace"))[0]
            text = raw.decode("utf-8", "replace")
        except (ValueError, UnicodeError):
            text = match[1]
    return text or " ".join(details.split())


def describe_error(err: grpc.RpcError, server: str, model: str, version: int | None = None,
                   label: str | None = None, deadline_s: float | None = None) -> str:
    """One line saying what went wrong, for the gRPC status codes a user can act on."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = tidy_details((err.details() if hasattr(err, "details") else str(err)) or "")
    what = f"model '{model}'" + (f" version {version}" if version is not None else "") + (
        f" label '{label}'" if label else "")
    if code == grpc.StatusCode.UNAVAILABLE:
        connect_words = ("connect", "refused", "resolve", "dns", "unreachable", "socket closed")
        if not details or any(w in details.lower() for w in connect_words):
            return f"no server at {server}: is tensorflow/serving running? ({details})"
        return f"server at {server} is unavailable: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return f"{what} not found on {server}: {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"{server} rejected the request for {what}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f"{deadline_s:g} s" if deadline_s is not None else "the deadline"
        return (f"no answer from {server} for {what} within {limit}: raise --deadline_s, or "
                f"check the server's load")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"{server}: message too large or server out of resources ({details}); " \
               f"raise --max_message_mb (both client and server limits apply)"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return f"{server} cannot serve {what}: {details}"
    return f"{server} answered {code.name if code else 'UNKNOWN'} for {what}: {details}"


