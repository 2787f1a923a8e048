"""Every request and every version load runs through here, so none can stop the server.

A request gets a number; native stderr written while it runs is printed with its description
(native_stderr.py); TensorFlow and Python errors become the gRPC status TF Serving would answer;
a failure is logged as one line (`predict #9 image_encoder, inputs images: string[1] failed:
INVALID_ARGUMENT: ...`); the metrics count it.
"""
from __future__ import annotations

import itertools
import time

import grpc
import tensorflow as tf
from absl import logging

from serving.constants import DEFAULT_SIGNATURE
from serving.standin.errors import ServingError, clean_tf_message, grpc_code
from serving.standin.metrics import Metrics
from serving.standin.native_stderr import NativeStderr

# Native stderr (libjpeg's "Unsupported marker type ...") printed with the request that caused
# it; active once main() has called NATIVE.capture().
NATIVE = NativeStderr()
_numbers = itertools.count(1)


def next_number() -> int:
    """A number no other request or load in this process has (the log and markers name it)."""
    return next(_numbers)


def run_request(fn, metrics: Metrics | None, api: str, model: str, what: str = ""):
    """Runs one request: returns (response, None) or (None, ServingError). Never raises.

    `what` describes the request (model, version, inputs) in the failure's log line and in the
    native stderr written meanwhile."""
    start = time.perf_counter()
    number = next_number()
    description = f"{api} #{number} {what or model or ''}".strip()
    try:
        with NATIVE.request(str(number), description):
            result, error = fn(), None
    except ServingError as e:
        result, error = None, e
    except tf.errors.OpError as e:
        result, error = None, ServingError(grpc_code(e.error_code), clean_tf_message(e.message))
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
    Never raises (it runs before `run_request` guards the request)."""
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
