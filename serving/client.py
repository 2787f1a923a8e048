"""gRPC client for TF Serving (or the stand-in): `python -m serving.client --text "a red car"`.

Examples:

    python -m serving.client --text "a dog runs on the grass"            # text_to_image: top-k
    python -m serving.client --image photo.jpg                            # image_to_text: top-k
    python -m serving.client --text "a red car" --embed                   # text_encoder: embedding
    python -m serving.client --text "..." --model_version 3               # or by --version_label
    python -m serving.client --status --metadata --model text_encoder     # versions, signatures

Every output tensor of the signature is printed (string tensors decoded): an embedding as a
summary (`--embed` prints all values), outputs that share a [queries, k] shape (top-k ids,
captions, scores) as one ranked table per query. `--status` and `--metadata` print the model's
versions (ModelService.GetModelStatus) and signatures (GetModelMetadata) instead of querying;
without --model they ask about the four default models.

Exit status: 0 served; 1 the server answered with an error or could not be reached (one line on
stderr says which); 2 a bad command line or an unreadable input file.

TensorFlow is never imported (serving/protos.py, serving/tensors.py): a call takes ~0.3 s.
Library use (tests, benchmarks): `make_channel`, `prediction_stub`, `model_stub`, `predict`,
`predict_response`, `get_metadata`, `get_status`, `describe_error`, `run`.
"""
from __future__ import annotations

import sys
import time
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
# Query kind → (default model, signature input name).
# Default models: a query returns the top-k gallery matches; --embed asks the encoders instead.
QUERY_DEFAULTS = {"text": ("text_to_image", "sentences"), "image": ("image_to_text", "images")}
EMBED_DEFAULTS = {"text": ("text_encoder", "sentences"), "image": ("image_encoder", "images")}
DEFAULT_MODELS = [m for m, _ in (*QUERY_DEFAULTS.values(), *EMBED_DEFAULTS.values())]

EXIT_OK, EXIT_RPC_ERROR, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- library functions

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


def _fill_model_spec(spec, model: str, version: int | None, label: str | None,
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
    _fill_model_spec(request.model_spec, model, version, label, signature_name)
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
    _fill_model_spec(request.model_spec, model, version, label)
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
    _fill_model_spec(request.model_spec, model, version, label)
    response = stub.GetModelStatus(request, timeout=timeout)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [{"version": s.version, "state": state_name(s.state),
             "error_code": s.status.error_code, "error_message": s.status.error_message}
            for s in response.model_version_status]


def describe_error(err: grpc.RpcError, server: str, model: str, version: int | None = None,
                   label: str | None = None, deadline_s: float | None = None) -> str:
    """One line saying what went wrong, for the gRPC status codes a user can act on."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else str(err)) or ""
    details = " ".join(details.split())  # one line, whatever the server sent
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


# --------------------------------------------------------------------------- printing

def _decode(value) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return repr(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.6f}"
    return str(value)


def _format_array(array: np.ndarray) -> str:
    if array.dtype == object:
        return str(np.vectorize(_decode, otypes=[object])(array).tolist()) if array.size else "[]"
    return np.array2string(array, precision=6, threshold=1000, max_line_width=100)


def format_outputs(outputs: Mapping[str, np.ndarray], queries: list[str] | None = None,
                   full: bool = False, preview: int = 8) -> str:
    """Every output tensor as text. Outputs sharing one [queries, k] shape (top-k ids, texts,
    scores) become a ranked table per query; a float [queries, D] tensor an embedding summary
    (all values when `full`); anything else its values, strings decoded."""
    lines = []
    names = sorted(outputs)
    by_shape: dict[tuple, list[str]] = {}
    for name in names:
        by_shape.setdefault(outputs[name].shape, []).append(name)
    tabled = set()
    for shape, group in by_shape.items():
        if len(shape) == 2 and len(group) >= 2:
            tabled.update(group)
            lines.append(f"{', '.join(group)}: top-{shape[1]} for {shape[0]} quer"
                         f"{'y' if shape[0] == 1 else 'ies'}")
            for row in range(shape[0]):
                label = queries[row] if queries and row < len(queries) else f"query {row}"
                lines.append(f"  [{row}] {label}")
                lines.append("    rank  " + "  ".join(group))
                for k in range(shape[1]):
                    cells = "  ".join(_decode(outputs[name][row, k]) for name in group)
                    lines.append(f"    {k + 1:4d}  {cells}")
    for name in names:
        if name in tabled:
            continue
        array = outputs[name]
        header = f"{name}: {array.dtype.name if array.dtype != object else 'string'} " \
                 f"{list(array.shape)}"
        lines.append(header)
        if array.ndim == 2 and array.dtype.kind == "f":  # one embedding per query
            for row in range(array.shape[0]):
                label = queries[row] if queries and row < len(queries) else f"query {row}"
                vec = array[row]
                lines.append(f"  [{row}] {label}  L2 norm {np.linalg.norm(vec):.6f}")
                if full or vec.size <= preview:
                    values = np.array2string(vec, precision=6, threshold=vec.size + 1,
                                             max_line_width=100)
                    lines.append("    " + values.replace("\n", "\n    "))
                else:
                    head = ", ".join(f"{v:.4f}" for v in vec[:preview])
                    lines.append(f"    [{head}, ...] (first {preview} of {vec.size}; "
                                 f"--embed for all)")
        else:
            lines.append("  " + _format_array(array).replace("\n", "\n  "))
    return "\n".join(lines)


# --------------------------------------------------------------------------- status, metadata

def _code_name(code: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), f"code {code}")


def format_status(model: str, statuses: list[dict]) -> str:
    """GetModelStatus as text: one line per version, with its state and any load error."""
    lines = [f"model {model}: status"]
    for s in statuses:
        line = f"  version {s['version']}: {s['state']}"
        if s["error_code"]:
            line += f" ({_code_name(s['error_code'])}: {s['error_message']})"
        lines.append(line)
    return "\n".join(lines)


def _shape(shape) -> str:
    if shape.unknown_rank:
        return "[unknown rank]"
    return "[" + ", ".join("None" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_metadata(model: str, version: int, signatures: Mapping) -> str:
    """The signatures of GetModelMetadata as text: each input and output, dtype and shape
    (None: any size). The SavedModel's internal `__saved_model_init_op` is left out."""
    lines = [f"model {model} version {version}: signatures"]
    for key in sorted(k for k in signatures if not k.startswith("__saved_model")):
        sig = signatures[key]
        lines.append(f"  {key} ({sig.method_name or 'no method name'})")
        for kind, infos in (("input ", sig.inputs), ("output", sig.outputs)):
            for name in sorted(infos):
                info = infos[name]
                lines.append(f"    {kind} {name}: {tensors.dtype_name(info.dtype)} "
                             f"{_shape(info.tensor_shape)}")
    return "\n".join(lines)


def inspect_models(server: str, models: list[str] | None, status: bool, metadata: bool,
                   version: int | None = None, label: str | None = None,
                   deadline_s: float = DEFAULT_DEADLINE_S,
                   max_message_mb: float = DEFAULT_MAX_MESSAGE_MB, out=None, err=None) -> int:
    """`--status` / `--metadata`: print them for `models` (None: the four default models, where
    one the server does not know is a line, not an error); returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    names = models or DEFAULT_MODELS
    channel = make_channel(server, max_message_mb)
    served = 0
    try:
        for name in names:
            try:
                if status:
                    print(format_status(name, get_status(model_stub(channel), name, version,
                                                         label, deadline_s)), file=out)
                if metadata:
                    served_version, signatures = get_metadata(prediction_stub(channel), name,
                                                              version, label, deadline_s)
                    print(format_metadata(name, served_version, signatures), file=out)
                served += 1
            except grpc.RpcError as e:
                if models is None and e.code() == grpc.StatusCode.NOT_FOUND:
                    print(f"model {name}: not served on {server}", file=out)
                    continue
                print(f"error: {describe_error(e, server, name, version, label, deadline_s)}",
                      file=err)
                return EXIT_RPC_ERROR
    finally:
        channel.close()
    if not served:
        print(f"error: {server} serves none of the default models {', '.join(names)}: name "
              f"yours with --model", file=err)
        return EXIT_RPC_ERROR
    return EXIT_OK


# --------------------------------------------------------------------------- the program

def run(server: str = DEFAULT_SERVER, texts: list[str] | None = None,
        images: list[str] | None = None, model: str | None = None, input_name: str | None = None,
        version: int | None = None, label: str | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S, max_message_mb: float = DEFAULT_MAX_MESSAGE_MB,
        embed: bool = False, signature_name: str = DEFAULT_SIGNATURE,
        status: bool = False, metadata: bool = False, out=None, err=None) -> int:
    """The client program without flag parsing; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    texts, images = list(texts or []), list(images or [])
    if version is not None and label:
        print("error: give --model_version or --version_label, not both", file=err)
        return EXIT_USAGE
    if status or metadata:
        if texts or images:
            print("error: --status and --metadata ask about a model (--model); give them "
                  "without --text/--image", file=err)
            return EXIT_USAGE
        return inspect_models(server, [model] if model else None, status, metadata, version,
                              label, deadline_s, max_message_mb, out, err)
    if bool(texts) == bool(images):
        print("error: give --text or --image (one kind per request), or --status/--metadata",
              file=err)
        return EXIT_USAGE
    kind = "text" if texts else "image"
    default_model, default_input = (EMBED_DEFAULTS if embed else QUERY_DEFAULTS)[kind]
    model = model or default_model
    input_name = input_name or default_input
    if texts:
        values, queries = texts, texts
    else:
        values, queries = [], images
        for path in images:
            try:
                with open(path, "rb") as f:
                    values.append(f.read())
            except OSError as e:
                print(f"error: cannot read image {path}: {e.strerror or e}", file=err)
                return EXIT_USAGE
    channel = make_channel(server, max_message_mb)
    try:
        start = time.perf_counter()
        response = predict_response(prediction_stub(channel), model, {input_name: values},
                                    version=version, label=label, timeout=deadline_s,
                                    signature_name=signature_name)
        elapsed_ms = (time.perf_counter() - start) * 1e3
    except grpc.RpcError as e:
        print(f"error: {describe_error(e, server, model, version, label, deadline_s)}", file=err)
        return EXIT_RPC_ERROR
    finally:
        channel.close()
    outputs = {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}
    spec = response.model_spec
    print(f"model {spec.name or model} version {spec.version.value} signature "
          f"{spec.signature_name or signature_name} ({elapsed_ms:.1f} ms round trip)", file=out)
    print(format_outputs(outputs, queries=queries, full=embed), file=out)
    return EXIT_OK


def _define_flags():
    from absl import flags
    flags.DEFINE_string("server", DEFAULT_SERVER, "host:port of TF Serving's gRPC endpoint.")
    flags.DEFINE_multi_string("text", [], "A sentence to query with (repeat for a batch): "
                              "top-k images from text_to_image; with --embed, its embedding "
                              "from text_encoder")
    flags.DEFINE_multi_string("image", [], "A JPEG/PNG file to query with (repeat for a batch): "
                              "top-k captions from image_to_text; with --embed, its embedding "
                              "from image_encoder")
    flags.DEFINE_string("model", None, "Model name; default text_to_image for --text and "
                        "image_to_text for --image (top-k matches); with --embed, "
                        "text_encoder / image_encoder.")
    flags.DEFINE_string("input_name", None, "Signature input; default sentences / images.")
    flags.DEFINE_string("signature_name", DEFAULT_SIGNATURE, "Signature to call.")
    flags.DEFINE_integer("model_version", None, "Serve this version (default: the latest).")
    flags.DEFINE_string("version_label", None, "Serve the version with this label.")
    flags.DEFINE_float("deadline_s", DEFAULT_DEADLINE_S, "RPC deadline in seconds.")
    flags.DEFINE_float("max_message_mb", DEFAULT_MAX_MESSAGE_MB,
                       "gRPC max send/receive message size in MiB (gRPC's default is 4).")
    flags.DEFINE_boolean("embed", False, "Ask the encoder for the embedding (every value "
                         "printed) instead of the top-k matches.")
    flags.DEFINE_boolean("status", False, "Instead of a query: print each version of --model "
                         "and its state (ModelService.GetModelStatus); without --model, of "
                         f"{', '.join(DEFAULT_MODELS)}.")
    flags.DEFINE_boolean("metadata", False, "Instead of a query: print the signatures of "
                         "--model, each input and output with dtype and shape "
                         "(GetModelMetadata); without --model, as --status.")
    return flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return EXIT_USAGE
    f = FLAGS
    return run(server=f.server, texts=f.text, images=f.image, model=f.model,
               input_name=f.input_name, version=f.model_version, label=f.version_label,
               deadline_s=f.deadline_s, max_message_mb=f.max_message_mb, embed=f.embed,
               signature_name=f.signature_name, status=f.status, metadata=f.metadata)


if __name__ == "__main__":
    from absl import app
    FLAGS = _define_flags()
    app.run(main)
