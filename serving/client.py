"""gRPC client for TF Serving (or the stand-in): `python -m serving.client --text "a red car"`.

Examples:

    python -m serving.client --text "a dog runs on the grass"            # text_to_image: top-k
    python -m serving.client --image photo.jpg                            # image_to_text: top-k
    python -m serving.client --text "a red car" --embed                   # text_encoder: embedding
    python -m serving.client --text "..." --model_version 3               # or by --version_label
    python -m serving.client --status --metadata --model text_encoder     # versions, signatures
    python -m serving.client --text "a red car" --k 20 --tag street       # search: k, a tag
    python -m serving.client --image photo.jpg --ids cap1,cap7 --json     # an id allow-list, JSON
    python -m serving.client --embedding vectors.npy --k 5                # by embedding (images)
    python -m serving.client --like img_0042 --k 5                        # more like this item

Plain --text / --image call the model's serving_default (a k fixed at export), as servers with
older exports answer. --k, --tag, --ids, --nprobe, --embedding and --like call the index
models' `search`, `search_by_embedding` and `embedding_of` signatures (serving/query.py) and
print each hit with its metadata (path, caption, tags). --json prints one JSON document instead.

Every output tensor of a plain call is printed (string tensors decoded): an embedding as a
summary (`--embed` prints all values), outputs that share a [queries, k] shape (top-k ids,
captions, scores) as one ranked table per query. `--status` and `--metadata` print the model's
versions (ModelService.GetModelStatus) and signatures (GetModelMetadata) instead of querying;
without --model they ask about the four default models.

Exit status: 0 served; 1 the server answered with an error, could not be reached or lacks what
the query needs (one line on stderr says which); 2 a bad command line or an unreadable input
file; 141 the reader of the output went away (`| head`), said nowhere.

TensorFlow is never imported (serving/protos.py, serving/tensors.py): a call takes ~0.3 s.
Library use: `SearchClient` (serving/query.py: text, image, embedding and more-like-this
searches, encoders), and the RPC functions of serving/rpc.py, importable from here:
`make_channel`, `prediction_stub`, `model_stub`, `predict`, `predict_response`, `get_metadata`,
`get_status`, `describe_error`; printing: `format_outputs`, `format_search`; the program: `run`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import grpc
import numpy as np

from serving import output
from serving.constants import DEFAULT_SIGNATURE
from serving.output import format_metadata, format_outputs, format_search, format_status
from serving.query import (
    Embeddings,
    Hit,
    SearchClient,
    SearchError,
    SearchResult,
    ServerError,
    UnsupportedError,
)
from serving.rpc import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_SERVER,
    describe_error,
    from_tensor_proto,
    get_metadata,
    get_status,
    make_channel,
    model_stub,
    predict,
    predict_response,
    prediction_stub,
    to_tensor_proto,
)

__all__ = [
    "DEFAULT_DEADLINE_S", "DEFAULT_MAX_MESSAGE_MB", "DEFAULT_SERVER", "DEFAULT_SIGNATURE",
    "Embeddings", "Hit", "SearchClient", "SearchError", "SearchResult", "ServerError",
    "UnsupportedError", "describe_error", "format_metadata", "format_outputs", "format_search",
    "format_status", "from_tensor_proto", "get_metadata", "get_status", "inspect_models",
    "make_channel", "model_stub", "predict", "predict_response", "prediction_stub",
    "read_embeddings", "run", "to_tensor_proto",
]

# Query kind → (default model, signature input name).
# Default models: a query returns the top-k gallery matches; --embed asks the encoders instead.
QUERY_DEFAULTS = {"text": ("text_to_image", "sentences"), "image": ("image_to_text", "images")}
EMBED_DEFAULTS = {"text": ("text_encoder", "sentences"), "image": ("image_encoder", "images")}
DEFAULT_MODELS = [m for m, _ in (*QUERY_DEFAULTS.values(), *EMBED_DEFAULTS.values())]
# --embedding and --like search this gallery unless --model names another.
DEFAULT_GALLERY = "text_to_image"

EXIT_OK, EXIT_RPC_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `grep ... | head`


# --------------------------------------------------------------------------- status, metadata

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




# --------------------------------------------------------------------------- query inputs

def read_embeddings(values: list[str]) -> np.ndarray:
    """--embedding values → float32 [N, D]. Each is a file (`.npy`: [D] or [N, D]; text: one
    vector per line, numbers separated by commas or spaces) or the numbers themselves
    ("0.1,0.2,..."). ValueError says which one is wrong."""
    rows = []
    for value in values:
        if os.path.isfile(value):
            if value.endswith(".npy"):
                try:
                    array = np.load(value, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise ValueError(f"cannot read {value} as a .npy array: {e}") from None
                if array.dtype.kind not in "fiu":
                    raise ValueError(f"{value} holds {array.dtype} values, not numbers")
                array = np.asarray(array, np.float32)
                if array.ndim not in (1, 2):
                    raise ValueError(f"{value} has shape {list(array.shape)}: give [D] or [N, D]")
                rows.extend(np.atleast_2d(array))
                continue
            with open(value, encoding="utf-8", errors="replace") as f:
                lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
            if not lines:
                raise ValueError(f"{value} holds no numbers")
            for n, line in lines:
                rows.append(_floats(line, f"{value}, line {n}"))
        else:
            rows.append(_floats(value, "--embedding"))
    widths = sorted({len(r) for r in rows})
    if len(widths) > 1:
        raise ValueError(f"the query vectors differ in length ({', '.join(map(str, widths))} "
                         f"values): one request takes vectors of one width")
    return np.stack(rows).astype(np.float32)


def _floats(text: str, where: str) -> np.ndarray:
    parts = text.replace(",", " ").split()
    try:
        values = np.array([float(p) for p in parts], np.float32)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise ValueError(f"{where}: {bad!r:.40} is not a number (give a file, or numbers "
                         f"separated by commas)") from None
    if values.size == 0:
        raise ValueError(f"{where}: no numbers")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- the program

def run(server: str = DEFAULT_SERVER, texts: list[str] | None = None,
        images: list[str] | None = None, model: str | None = None, input_name: str | None = None,
        version: int | None = None, label: str | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S, max_message_mb: float = DEFAULT_MAX_MESSAGE_MB,
        embed: bool = False, signature_name: str = DEFAULT_SIGNATURE,
        status: bool = False, metadata: bool = False, k: int | None = None,
        tag: str | None = None, ids: list[str] | None = None,
        embeddings: list[str] | None = None, like: list[str] | None = None,
        nprobe: int | None = None, json_output: bool = False, out=None, err=None) -> int:
    """The client program without flag parsing; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    texts, images = list(texts or []), list(images or [])
    embeddings, like, ids = list(embeddings or []), list(like or []), list(ids or [])
    if version is not None and label:
        print("error: give --model_version or --version_label, not both", file=err)
        return EXIT_USAGE
    kinds = [flag for flag, given in (("--text", texts), ("--image", images),
                                      ("--embedding", embeddings), ("--like", like)) if given]
    if status or metadata:
        if json_output:
            print("error: --json prints queries' answers; --status and --metadata print text",
                  file=err)
            return EXIT_USAGE
        if kinds:
            print("error: --status and --metadata ask about a model (--model); give them "
                  "without --text/--image/--embedding/--like", file=err)
            return EXIT_USAGE
        return inspect_models(server, [model] if model else None, status, metadata, version,
                              label, deadline_s, max_message_mb, out, err)
    if len(kinds) != 1:
        print("error: give --text or --image (one kind per request), --embedding or --like, "
              "or --status/--metadata" + (f"; not {' and '.join(kinds)} together" if kinds
                                          else ""), file=err)
        return EXIT_USAGE
    restricted = [flag for flag, given in (("--k", k is not None), ("--tag", bool(tag)),
                                           ("--ids", bool(ids)),
                                           ("--nprobe", nprobe is not None)) if given]
    searching = bool(restricted or embeddings or like)
    if searching:
        new_flags = restricted + [f for f in kinds if f in ("--embedding", "--like")]
        conflict = [f for f, given in (("--embed", embed),
                                       ("--signature_name", signature_name != DEFAULT_SIGNATURE),
                                       ("--input_name", bool(input_name))) if given]
        if conflict:
            print(f"error: {', '.join(new_flags)} query an index through its search "
                  f"signatures; {', '.join(conflict)} belong to plain --text/--image calls",
                  file=err)
            return EXIT_USAGE
    values = None
    if images:
        values = []
        for path in images:
            try:
                with open(path, "rb") as f:
                    values.append(f.read())
            except OSError as e:
                print(f"error: cannot read image {path}: {e.strerror or e}", file=err)
                return EXIT_USAGE
    if searching:
        return _search(server, texts, values, images, embeddings, like, model, version, label,
                       deadline_s, max_message_mb, k, tag or "", ids, nprobe, json_output, out,
                       err)
    kind = "text" if texts else "image"
    default_model, default_input = (EMBED_DEFAULTS if embed else QUERY_DEFAULTS)[kind]
    model = model or default_model
    input_name = input_name or default_input
    queries = texts if texts else images
    values = texts if texts else values
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
    served_name, served_signature = spec.name or model, spec.signature_name or signature_name
    if json_output:
        print(output.to_json(output.outputs_json(outputs, queries, served_name,
                                                 spec.version.value, served_signature,
                                                 elapsed_ms)), file=out)
        return EXIT_OK
    print(f"model {served_name} version {spec.version.value} signature {served_signature} "
          f"({elapsed_ms:.1f} ms round trip)", file=out)
    print(format_outputs(outputs, queries=queries, full=embed), file=out)
    return EXIT_OK


def _search(server, texts, image_values, image_paths, embeddings, like, model, version, label,
            deadline_s, max_message_mb, k, tag, ids, nprobe, json_output, out, err) -> int:
    """--k/--tag/--ids/--nprobe with --text/--image, --embedding, --like: the search
    signatures through SearchClient; prints the hits with their metadata."""
    restriction = dict(k=k, tag=tag, ids=ids, nprobe=nprobe, version=version, label=label)
    try:
        vectors = read_embeddings(embeddings) if embeddings else None
    except ValueError as e:
        print(f"error: {e}", file=err)
        return EXIT_USAGE
    client = SearchClient(server, deadline_s=deadline_s, max_message_mb=max_message_mb)
    try:
        if texts:
            result = client.text_search(texts, model=model or QUERY_DEFAULTS["text"][0],
                                        **restriction)
        elif image_values is not None:
            result = client.image_search(image_values, model=model or QUERY_DEFAULTS["image"][0],
                                         **restriction)
            result = _relabel(result, image_paths)
        elif vectors is not None:
            result = client.embedding_search(vectors, model or DEFAULT_GALLERY, **restriction)
        else:
            result = client.more_like_this(like, model or DEFAULT_GALLERY, **restriction)
    except SearchError as e:
        print(f"error: {e.message}", file=err)
        return EXIT_RPC_ERROR
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=err)
        return EXIT_USAGE
    finally:
        client.close()
    print(output.to_json(result.as_dict()) if json_output else format_search(result), file=out)
    return EXIT_OK


def _relabel(result: SearchResult, labels: list[str]) -> SearchResult:
    return dataclasses.replace(result, queries=list(labels))


def _define_flags():
    from absl import flags
    flags.DEFINE_string("server", DEFAULT_SERVER, "host:port of TF Serving's gRPC endpoint.")
    flags.DEFINE_multi_string("text", [], "A sentence to query with (repeat for a batch): "
                              "top-k images from text_to_image; with --embed, its embedding "
                              "from text_encoder")
    flags.DEFINE_multi_string("image", [], "A JPEG/PNG file to query with (repeat for a batch): "
                              "top-k captions from image_to_text; with --embed, its embedding "
                              "from image_encoder")
    flags.DEFINE_multi_string("embedding", [], "Query by embedding (search_by_embedding on "
                              f"--model, default {DEFAULT_GALLERY}): a .npy file ([D] or "
                              "[N, D]), a text file (one vector per line) or the numbers "
                              "themselves, comma-separated; repeat for a batch.")
    flags.DEFINE_multi_string("like", [], "More like this gallery item (its id): its stored "
                              "embedding (embedding_of), then search_by_embedding in the same "
                              f"gallery (--model, default {DEFAULT_GALLERY}); the item itself "
                              "comes first. Repeat for a batch.")
    flags.DEFINE_integer("k", None, "Hits per query (1 to the index's max_k; calls the 'search' "
                         "signatures). Default: the k of the model's serving_default (else 10, "
                         "at most the index's max_k).")
    flags.DEFINE_string("tag", None, "Only gallery items with this tag (given at indexing).")
    flags.DEFINE_list("ids", [], "Only these gallery ids (comma-separated allow-list).")
    flags.DEFINE_integer("nprobe", None, "Inverted lists scanned per query, for an approximate "
                         "index (0: the index's default); an exact index has none.")
    flags.DEFINE_boolean("json", False, "Print one JSON document (hits with rank, id, score, "
                         "path, caption, tags; or the outputs) instead of text.")
    flags.DEFINE_string("model", None, "Model name; default text_to_image for --text and "
                        "image_to_text for --image (top-k matches); with --embed, "
                        f"text_encoder / image_encoder; {DEFAULT_GALLERY} for --embedding and "
                        "--like.")
    flags.DEFINE_string("input_name", None, "Signature input of a plain call; default "
                        "sentences / images.")
    flags.DEFINE_string("signature_name", DEFAULT_SIGNATURE, "Signature of a plain call.")
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
    try:
        code = run(server=f.server, texts=f.text, images=f.image, model=f.model,
                   input_name=f.input_name, version=f.model_version, label=f.version_label,
                   deadline_s=f.deadline_s, max_message_mb=f.max_message_mb, embed=f.embed,
                   signature_name=f.signature_name, status=f.status, metadata=f.metadata,
                   k=f.k, tag=f.tag, ids=f.ids, embeddings=f.embedding, like=f.like,
                   nprobe=f.nprobe, json_output=f.json)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit
    except BrokenPipeError:
        # Python's documented way (library/signal, "Note on SIGPIPE"): point stdout at devnull
        # so the flush at exit cannot fail again, and leave without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    from absl import app
    FLAGS = _define_flags()
    app.run(main)
