"""TF Serving's REST JSON ↔ Predict protos: the `instances` (row) and `inputs` (columnar) request
forms, the `predictions` / `outputs` answers, and bytes as {"b64": "..."}.
"""
from __future__ import annotations

import base64

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import predict_pb2

from serving.standin.errors import ServingError, braced, invalid_argument
from serving.standin.loaded_version import LoadedVersion


def predict_request(loaded: LoadedVersion, body: dict, signature_name: str):
    """Builds a PredictRequest from TF Serving's REST body; returns (request, row_format)."""
    specs = loaded.input_specs.get(signature_name)
    if specs is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{signature_name}" not found.')
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise invalid_argument("Missing 'inputs' or 'instances' key" if not has_instances else
                               "Not allowed to have both 'inputs' and 'instances' keys")
    columns: dict[str, object] = {}
    if has_instances:
        scalars = sorted(name for name, spec in specs.items() if spec.shape.rank == 0)
        if scalars:  # TF Serving batches every input of a row: a scalar cannot be sent so
            raise invalid_argument(
                f"signature '{signature_name}' takes scalar inputs {braced(scalars)}, which the "
                f"row format ('instances') cannot send: it batches every input. Send the "
                f"columnar form, {{\"signature_name\": \"{signature_name}\", \"inputs\": "
                f"{{...}}}}, with each input named")
        instances = body["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("'instances' must be a list")
        named = bool(instances) and all(isinstance(x, dict) and not _is_b64(x) for x in instances)
        if named:
            keys = set(instances[0])
            if any(set(x) != keys for x in instances):
                raise invalid_argument("every instance must have the same named inputs")
            columns = {k: [x[k] for x in instances] for k in keys}
        else:
            if len(specs) != 1:
                raise invalid_argument(f"the signature has inputs {braced(specs)}: send each "
                                       f"instance as an object naming them")
            columns = {next(iter(specs)): instances}
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = dict(inputs)
        else:
            if len(specs) != 1:
                raise invalid_argument(f"the signature has inputs {braced(specs)}: send "
                                       f"'inputs' as an object naming them")
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


def predict_body(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    """The JSON answer: `predictions` for a row-format request, `outputs` for a columnar one."""
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _array_to_json(*next(iter(outputs.items())))}
        return {"outputs": {n: _array_to_json(n, a) for n, a in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": _array_to_json(*next(iter(outputs.items())))}
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise invalid_argument("outputs differ in their 0th dimension: ask with 'inputs' "
                               "(columnar) instead")
    (size,) = sizes
    columns = {n: _array_to_json(n, a) for n, a in outputs.items()}
    return {"predictions": [{n: columns[n][i] for n in columns} for i in range(size)]}


def message_dict(message) -> dict:
    """A proto as TF Serving's REST API prints it: field names as in the .proto, defaults kept."""
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # older protobuf
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _json_to_array(value, dtype: tf.DType, name: str) -> np.ndarray:
    """JSON value → array of the signature's dtype; strings UTF-8, {"b64": ...} decoded."""
    if dtype == tf.string:
        def convert(v):
            if isinstance(v, list):
                return [convert(x) for x in v]
            if isinstance(v, dict):
                if set(v) != {"b64"} or not isinstance(v["b64"], str):
                    raise invalid_argument(f"input '{name}': objects must be {{\"b64\": \"...\"}}")
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except ValueError as e:
                    raise invalid_argument(f"input '{name}': bad base64: {e}") from e
            if isinstance(v, str):
                return v.encode("utf-8")
            raise invalid_argument(f"input '{name}': expects strings, got {type(v).__name__} "
                                   f"{v!r:.40}")
        converted = convert(value)
        try:
            array = np.array(converted, dtype=object)
        except ValueError as e:
            raise invalid_argument(f"input '{name}': ragged or malformed list: {e}") from e
        if array.dtype != object or any(not isinstance(x, bytes) for x in array.flat):
            raise invalid_argument(f"input '{name}': ragged or malformed list of strings")
        return array
    try:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError) as e:
        raise invalid_argument(f"input '{name}': cannot convert to {dtype.name}: {e}") from e


def _array_to_json(name: str, array: np.ndarray):
    """Numbers as numbers; strings as text, or {"b64": ...} when not UTF-8 or the output's name
    ends in `_bytes` (TF Serving's rule)."""
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
