"""serving/: the stand-in server and the gRPC client, end to end over loopback.

Independent of the exporter: the module fixture writes tiny SavedModels with the exported
signatures (text `sentences` → `embedding`, image `images` → `embedding`, plus a top-k index
model `sentences` → `ids`, `scores`) in TF Serving's layout with a models.config whose base_paths
are the container's `/models/<name>`, then starts `python -m serving.standin` in a
subprocess on free loopback ports. Every check goes through the real client functions (or its
CLI), as a user would.
"""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

from serving import client  # noqa: E402
from serving.standin_process import StandinProcess  # noqa: E402

DIM = 8
GALLERY = [f"img{i}" for i in range(5)]
pytestmark = pytest.mark.server  # these start the stand-in server
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


# ----------------------------------------------------------------------------- tiny models

class TextEncoder(tf.Module):
    """sentences → a deterministic [N, DIM] embedding; `scale` tells versions apart."""

    def __init__(self, scale):
        super().__init__()
        self.scale = tf.Variable(float(scale))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, sentences):
        buckets = tf.strings.to_hash_bucket_fast(sentences, DIM)
        length = tf.cast(tf.strings.length(sentences), tf.float32)[:, None]
        return {"embedding": tf.one_hot(buckets, DIM) * self.scale + 0.01 * length}


class ImageEncoder(tf.Module):
    """images (JPEG/PNG bytes) → mean colour in [0, 1]; bad bytes raise InvalidArgumentError."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, images):
        def mean_colour(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1]) / 255.0
        return {"embedding": tf.map_fn(mean_colour, images,
                                       fn_output_signature=tf.TensorSpec([3], tf.float32))}


class TextToImage(tf.Module):
    """sentences → top-3 gallery ids and scores (the index models' output shape)."""

    def __init__(self):
        super().__init__()
        self.encoder = TextEncoder(1.0)
        self.gallery = tf.Variable(np.eye(len(GALLERY), DIM, dtype=np.float32))
        self.ids = tf.constant(GALLERY)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, sentences):
        embedding = self.encoder.serve(sentences)["embedding"]
        top = tf.math.top_k(tf.matmul(embedding, self.gallery, transpose_b=True), k=3)
        return {"ids": tf.gather(self.ids, top.indices), "scores": top.values}


def save(module, folder):
    """Writes a version as the exporter does: to a temporary folder, then renamed into place."""
    tmp = folder + ".tmp"
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    os.rename(tmp, folder)


def solid(colour, size):
    return np.broadcast_to(np.array(colour, np.uint8), (*size, 3)).copy()


def png_bytes(colour, size=(4, 6)):
    return tf.io.encode_png(solid(colour, size)).numpy()


def jpeg_bytes(colour, size=(8, 8)):
    return tf.io.encode_jpeg(solid(colour, size), quality=100).numpy()


def write_warmup(version_dir, sentences):
    """assets.extra/tf_serving_warmup_requests: a TFRecord of PredictionLog, as TF Serving reads."""
    os.makedirs(os.path.join(version_dir, "assets.extra"), exist_ok=True)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "text_encoder"
    log.predict_log.request.inputs["sentences"].CopyFrom(tf.make_tensor_proto(sentences))
    with tf.io.TFRecordWriter(os.path.join(version_dir, "assets.extra",
                                           "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


CONFIG = """model_config_list {{
{entries}}}
"""
ENTRY = """  config {{
    name: "{name}"
    base_path: "/models/{name}"
    model_platform: "tensorflow"{extra}
  }}
"""
IMAGE_POLICY = """
    model_version_policy { specific { versions: 1 } }
    version_labels { key: "stable" value: 1 }"""


def write_config(root, names):
    entries = "".join(ENTRY.format(name=n, extra=IMAGE_POLICY if n == "image_encoder" else "")
                      for n in names)
    path = os.path.join(root, "models.config")
    with open(path + ".tmp", "w") as f:
        f.write(CONFIG.format(entries=entries))
    os.replace(path + ".tmp", path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- fixtures

class Server:
    def __init__(self, root, standin: StandinProcess):
        self.root, self.standin, self.proc = root, standin, standin.proc
        self.address = standin.address
        self.rest = f"http://127.0.0.1:{standin.rest_port}"
        self.channel = client.make_channel(self.address)
        self.stub = client.prediction_stub(self.channel)
        self.models = client.model_stub(self.channel)

    def log(self):
        return self.standin.log_tail()

    def assert_alive(self):
        assert self.standin.alive(), "the stand-in died:\n" + self.log()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("exports"))
    for name in ("text_encoder", "image_encoder", "text_to_image", "hot_text", "broken"):
        os.makedirs(os.path.join(root, name))
    save(TextEncoder(1.0), os.path.join(root, "text_encoder", "1"))
    write_warmup(os.path.join(root, "text_encoder", "1"), ["warm up", "sentences"])
    save(ImageEncoder(), os.path.join(root, "image_encoder", "1"))
    save(TextToImage(), os.path.join(root, "text_to_image", "1"))
    save(TextEncoder(1.0), os.path.join(root, "hot_text", "1"))
    os.makedirs(os.path.join(root, "broken", "1"))
    with open(os.path.join(root, "broken", "1", "saved_model.pb"), "wb") as f:
        f.write(b"this is not a SavedModel")
    config = write_config(root, ["text_encoder", "image_encoder", "text_to_image", "hot_text",
                                 "broken"])
    standin = StandinProcess(
        [f"--model_config={config}", "--rest_port=0", "--file_system_poll_wait_seconds=0.5",
         "--model_config_file_poll_wait_seconds=0.5", "--tensorflow_intra_op_parallelism=1",
         "--tensorflow_inter_op_parallelism=1", "--grpc_max_threads=4"],
        os.path.join(root, "standin.log"), env=ENV)
    try:
        srv = Server(root, standin)
        yield srv
        srv.channel.close()
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def local(server):
    """The same SavedModels called in this process."""
    def load(name, version=1):
        return tf.saved_model.load(os.path.join(server.root, name, str(version))) \
            .signatures["serving_default"]
    return load


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


# ----------------------------------------------------------------------------- gRPC

def test_predict_equals_the_savedmodel_in_process(server, local):
    sentences = ["a dog runs", "Ünïcode, punctuation!", ""]
    got = client.predict(server.stub, "text_encoder", {"sentences": sentences})
    want = local("text_encoder")(sentences=tf.constant(sentences))["embedding"].numpy()
    assert got["embedding"].dtype == np.float32 and got["embedding"].shape == (3, DIM)
    np.testing.assert_array_equal(got["embedding"], want)

    images = [png_bytes([255, 0, 0]), jpeg_bytes([0, 0, 255]), png_bytes([10, 20, 30])]
    got = client.predict(server.stub, "image_encoder", {"images": images})
    want = local("image_encoder")(images=tf.constant(images))["embedding"].numpy()
    np.testing.assert_allclose(got["embedding"], want, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got["embedding"][0], [1, 0, 0], atol=1e-6)

    got = client.predict(server.stub, "text_to_image", {"sentences": sentences[:2]})
    want = local("text_to_image")(sentences=tf.constant(sentences[:2]))
    assert got["ids"].dtype == object and got["ids"].shape == (2, 3)
    np.testing.assert_array_equal(got["ids"], want["ids"].numpy())
    np.testing.assert_array_equal(got["scores"], want["scores"].numpy())
    assert set(got["ids"].ravel()) <= {g.encode() for g in GALLERY}


def test_metadata_and_status(server):
    version, signatures = client.get_metadata(server.stub, "text_encoder")
    assert version == 1
    sig = signatures["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert list(sig.inputs) == ["sentences"] and list(sig.outputs) == ["embedding"]
    assert sig.inputs["sentences"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in sig.inputs["sentences"].tensor_shape.dim] == [-1]
    assert sig.outputs["embedding"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.outputs["embedding"].tensor_shape.dim] == [-1, DIM]
    _, signatures = client.get_metadata(server.stub, "text_to_image", version=1)
    assert set(signatures["serving_default"].outputs) == {"ids", "scores"}

    assert client.get_status(server.models, "text_encoder") == [
        {"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
    assert client.get_status(server.models, "image_encoder", label="stable")[0]["version"] == 1
    # A version whose SavedModel cannot load is reported, not served; the server carries on.
    (broken,) = client.get_status(server.models, "broken")
    assert broken["state"] == "END" and broken["error_code"] != 0
    assert "broken version 1 failed" in broken["error_message"]
    assert rpc_error(client.predict, server.stub, "broken", {"sentences": ["x"]}).code() == \
        grpc.StatusCode.NOT_FOUND


def test_unknown_model_version_and_label(server):
    cases = [
        (client.predict, (server.stub, "no_such_model", {"sentences": ["x"]}), {},
         grpc.StatusCode.NOT_FOUND, "no_such_model"),
        (client.predict, (server.stub, "text_encoder", {"sentences": ["x"]}), {"version": 99},
         grpc.StatusCode.NOT_FOUND, "Specific(text_encoder, 99)"),
        (client.get_metadata, (server.stub, "text_encoder"), {"version": 99},
         grpc.StatusCode.NOT_FOUND, "99"),
        (client.get_status, (server.models, "no_such_model"), {},
         grpc.StatusCode.NOT_FOUND, "no_such_model"),
        (client.get_status, (server.models, "text_encoder"), {"version": 99},
         grpc.StatusCode.NOT_FOUND, "99"),
        (client.predict, (server.stub, "image_encoder", {"images": [png_bytes([1, 2, 3])]}),
         {"label": "nope"}, grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: nope"),
    ]
    for fn, args, kwargs, code, text in cases:
        err = rpc_error(fn, *args, **kwargs)
        assert err.code() == code and text in err.details(), (fn.__name__, args, err)
    got = client.predict(server.stub, "image_encoder", {"images": [png_bytes([0, 255, 0])]},
                         label="stable")
    np.testing.assert_allclose(got["embedding"], [[0, 1, 0]], atol=1e-6)


def test_bad_requests_are_invalid_argument_and_the_next_is_served(server):
    good_image = png_bytes([0, 0, 255])
    bad = [
        ("image_encoder", {"images": [b"\xff\xd8\xff a JPEG header, then garbage"]},
         "Invalid JPEG data"),
        ("image_encoder", {"images": [b"plain text, no image"]}, "Unknown image file format"),
        ("image_encoder", {"images": [b""]}, "image"),
        ("image_encoder", {"images": [good_image, b"GIF89a truncated"]}, ""),
        ("image_encoder", {"pictures": [good_image]}, "Missing but required: {images}"),
        ("text_encoder", {"sentences": ["x"], "extra": ["y"]}, "Sent extra: {extra}"),
        ("text_encoder", {"sentences": np.array([1.0, 2.0], np.float32)}, "expects string"),
        ("text_encoder", {"sentences": "a scalar"}, None),  # sent as [1]: valid
        ("text_encoder", {"sentences": [["a", "b"]]}, "incompatible"),
    ]
    for model, inputs, text in bad:
        if text is None:
            client.predict(server.stub, model, inputs)
            continue
        err = rpc_error(client.predict, server.stub, model, inputs)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (model, inputs, err)
        assert text in err.details(), (text, err.details())
        assert "\n" not in err.details() and "Graph execution error" not in err.details()
        server.assert_alive()
        got = client.predict(server.stub, "image_encoder", {"images": [good_image]})
        np.testing.assert_allclose(got["embedding"], [[0, 0, 1]], atol=1e-6)
    # A scalar tensor where the signature wants [None]: refused by shape, not a crash.
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "text_encoder"
    request.inputs["sentences"].CopyFrom(tf.make_tensor_proto(b"scalar"))
    err = rpc_error(server.stub.Predict, request, timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "incompatible" in err.details()
    # A tensor with more values than its shape holds cannot be decoded.
    request.inputs["sentences"].CopyFrom(tf.make_tensor_proto([b"one", b"two"]))
    request.inputs["sentences"].tensor_shape.dim[0].size = 1
    err = rpc_error(server.stub.Predict, request, timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "decoded" in err.details()
    server.assert_alive()


def test_new_version_is_served_without_restart(server, local):
    sentences = ["hot swap"]
    assert client.predict_response(server.stub, "hot_text", {"sentences": sentences}) \
        .model_spec.version.value == 1
    save(TextEncoder(2.0), os.path.join(server.root, "hot_text", "2"))
    deadline, version = time.monotonic() + 15, 1
    while version != 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        version = client.predict_response(server.stub, "hot_text", {"sentences": sentences}) \
            .model_spec.version.value
    assert version == 2, "version 2 was not picked up:\n" + server.log()
    got = client.predict(server.stub, "hot_text", {"sentences": sentences}, version=2)
    want = local("hot_text", 2)(sentences=tf.constant(sentences))["embedding"].numpy()
    np.testing.assert_array_equal(got["embedding"], want)
    assert got["embedding"].max() > 1.5  # scale 2: not version 1's answer
    # The default policy keeps the newest version only, as TF Serving's: version 1 goes.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {s["version"]: s["state"] for s in client.get_status(server.models, "hot_text")}
        if states == {1: "END", 2: "AVAILABLE"}:
            break
        time.sleep(0.25)
    assert states == {1: "END", 2: "AVAILABLE"}
    assert rpc_error(client.predict, server.stub, "hot_text", {"sentences": sentences},
                     version=1).code() == grpc.StatusCode.NOT_FOUND


def test_a_model_added_to_the_config_is_loaded(server):
    os.makedirs(os.path.join(server.root, "late"))
    save(TextEncoder(3.0), os.path.join(server.root, "late", "7"))
    write_config(server.root, ["text_encoder", "image_encoder", "text_to_image", "hot_text",
                               "broken", "late"])
    deadline, status = time.monotonic() + 15, None
    while time.monotonic() < deadline:
        try:
            status = client.get_status(server.models, "late")
            if status[0]["state"] == "AVAILABLE":
                break
        except grpc.RpcError:
            pass
        time.sleep(0.25)
    assert status and status[0] == {"version": 7, "state": "AVAILABLE", "error_code": 0,
                                     "error_message": ""}, server.log()
    assert client.predict(server.stub, "text_encoder", {"sentences": ["still here"]})

    # ModelService.HandleReloadConfigRequest: the RPC form of the same change.
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2
    from tensorflow_serving.config import model_server_config_pb2
    with open(os.path.join(server.root, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    kept = [c for c in config.model_config_list.config if c.name != "late"]
    del config.model_config_list.config[:]
    config.model_config_list.config.extend(kept)
    reply = server.models.HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
    assert reply.status.error_code == 0, reply
    assert rpc_error(client.get_status, server.models, "late").code() == grpc.StatusCode.NOT_FOUND
    config.model_config_list.config[0].model_platform = "pytorch"
    reply = server.models.HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
    assert reply.status.error_code != 0 and "pytorch" in reply.status.error_message
    assert client.predict(server.stub, "text_encoder", {"sentences": ["still here"]})


# ----------------------------------------------------------------------------- client program

def run_client(**kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = client.run(out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_client_prints_embeddings_and_top_k(server, tmp_path):
    code, out, err = run_client(server=server.address, texts=["a red car"], embed=True)
    assert code == 0, err
    assert "model text_encoder version 1 signature serving_default" in out
    assert "embedding: float32 [1, 8]" in out and "L2 norm" in out
    assert "first 8 of" not in out  # 8 values: all shown
    vectors = [np.linspace(0, 1, 20, dtype=np.float32)]
    assert "first 8 of 20; --embed for all" in client.format_outputs({"embedding": np.stack(
        vectors)})
    assert "first" not in client.format_outputs({"embedding": np.stack(vectors)}, full=True)

    image = tmp_path / "red.png"
    image.write_bytes(png_bytes([255, 0, 0]))
    code, out, err = run_client(server=server.address, images=[str(image)], embed=True)
    assert code == 0, err
    assert "model image_encoder version 1" in out and "embedding: float32 [1, 3]" in out

    code, out, err = run_client(server=server.address, texts=["a red car", "two dogs"])
    assert code == 0, err  # without --embed a text query goes to text_to_image: top-k
    assert "model text_to_image version 1" in out
    assert "ids, scores: top-3 for 2 queries" in out and "[1] two dogs" in out
    assert "rank  ids  scores" in out and "img" in out and "b'img" not in out


def test_client_status_and_metadata(server):
    code, out, err = run_client(server=server.address, model="text_to_image", status=True,
                                metadata=True)
    assert code == 0, err
    assert out.splitlines() == [
        "model text_to_image: status",
        "  version 1: AVAILABLE",
        "model text_to_image version 1: signatures",
        "  serving_default (tensorflow/serving/predict)",
        "    input  sentences: string [None]",
        "    output ids: string [None, 3]",
        "    output scores: float32 [None, 3]"]
    # A version that failed to load: its state and the load error, on one line.
    code, out, err = run_client(server=server.address, model="broken", status=True)
    assert code == 0, err
    assert "  version 1: END (" in out and "broken version 1 failed" in out
    # Without --model: the four default models; one the server lacks is a line, not an error.
    code, out, err = run_client(server=server.address, status=True)
    assert code == 0, err
    assert "model image_to_text: not served on " + server.address in out
    for name in ("text_to_image", "text_encoder", "image_encoder"):
        assert f"model {name}: status\n  version 1: AVAILABLE" in out
    code, out, err = run_client(server=server.address, model="nope", metadata=True)
    assert code == client.EXIT_RPC_ERROR and "model 'nope' not found on" in err
    code, _, err = run_client(server=server.address, texts=["x"], status=True)
    assert code == client.EXIT_USAGE and "without --text/--image" in err


def test_stand_in_log_names_the_request_behind_native_stderr(server):
    """libjpeg writes "Unsupported marker type 0x.." to fd 2 for a corrupt JPEG: the log must
    say which request and model it came from, and log the request's failure."""
    corrupt = b"\xff\xd8\xff a JPEG header, then garbage"
    for _ in range(2):
        err = rpc_error(client.predict, server.stub, "image_encoder", {"images": [corrupt]})
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    deadline, native = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(native) < 2:
        time.sleep(0.2)
        native = [line for line in server.log().splitlines() if "marker type" in line]
    assert len(native) >= 2, server.log()
    context = "standin_server: native stderr during predict #"
    for line in native:
        assert line.startswith(context), line
        assert "image_encoder, inputs images: string[1]: Unsupported marker type" in line, line
        number = line[len(context):].split()[0]
        assert f"predict #{number} image_encoder, inputs images: string[1] failed: " \
               f"INVALID_ARGUMENT: " in server.log(), (number, server.log())
    server.assert_alive()


def test_native_stderr_forwarder_names_the_requests_in_flight():
    """The forwarder alone: markers from concurrent requests, repeated lines, text outside any
    request, a line cut short by a marker, and text left at exit (a crash message)."""
    from serving.standin import native_stderr
    mark = native_stderr.MARK
    stream = b"".join([
        mark, b"+1 predict #1 image_encoder\n", b"Unsupported marker type 0x14\n" * 2,
        mark, b"+2 predict #2 text_encoder\n", b"both in flight\n", mark, b"-1\n",
        b"only two\n", mark, b"-2\n", b"outside\n", b"partial", mark, b"+3 loading m\n",
        mark, b"-3\n", b"F1130 crash at exit"])
    read_end, write_end = os.pipe()
    os.write(write_end, stream)
    os.close(write_end)
    out = io.StringIO()
    with os.fdopen(read_end, "rb") as source:
        native_stderr.forward(source, out)
    prefix = "standin_server: native stderr"
    assert out.getvalue().splitlines() == [
        f"{prefix} during predict #1 image_encoder: Unsupported marker type 0x14 (2 lines alike)",
        f"{prefix} during predict #1 image_encoder; predict #2 text_encoder: both in flight",
        f"{prefix} during predict #2 text_encoder: only two",
        f"{prefix} (no request in flight): outside",
        f"{prefix} (no request in flight): partial",
        f"{prefix} (no request in flight): F1130 crash at exit"]


def test_client_error_messages(server, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    code, _, err = run_client(server=dead, texts=["x"], deadline_s=5)
    assert code == client.EXIT_RPC_ERROR
    assert f"no server at {dead}: is tensorflow/serving running?" in err
    assert err.count("\n") == 1

    # DEADLINE_EXCEEDED, deterministically: a server that answers after 3 s, a 0.2 s deadline.
    from concurrent import futures

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    release = threading.Event()

    class Slow(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            release.wait(3)
            context.abort(grpc.StatusCode.CANCELLED, "too late")

    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Slow(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    try:
        code, _, err = run_client(server=f"127.0.0.1:{port}", texts=["x"], deadline_s=0.2)
    finally:
        release.set()
        slow.stop(grace=None)
    assert code == client.EXIT_RPC_ERROR and "within 0.2 s" in err and "--deadline_s" in err

    code, _, err = run_client(server=server.address, texts=["x"], model="nope")
    assert code == client.EXIT_RPC_ERROR and "model 'nope' not found on" in err
    code, _, err = run_client(server=server.address, texts=["x"], version=5)
    assert code == client.EXIT_RPC_ERROR and "model 'text_to_image' version 5 not found" in err

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _, err = run_client(server=server.address, images=[str(corrupt)], embed=True)
    assert code == client.EXIT_RPC_ERROR and "rejected the request" in err
    assert "image" in err and err.count("\n") == 1

    code, _, err = run_client(server=server.address, images=[str(tmp_path / "missing.jpg")])
    assert code == client.EXIT_USAGE and "cannot read image" in err
    code, _, err = run_client(server=server.address, texts=["x" * 1000], max_message_mb=0.0001)
    assert code == client.EXIT_RPC_ERROR and "--max_message_mb" in err
    server.assert_alive()


def test_client_command_line(server):
    dead = f"127.0.0.1:{free_port()}"
    ok = subprocess.Popen([sys.executable, "-m", "serving.client", f"--server={server.address}",
                           "--text=a dog", "--text=a cat", "--embed"], cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    down = subprocess.Popen([sys.executable, "-m", "serving.client", f"--server={dead}",
                             "--text=a dog", "--deadline_s=5"], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err[-2000:]
    assert "embedding: float32 [2, 8]" in out and "[1] a cat" in out
    out, err = down.communicate(timeout=120)
    assert down.returncode == 1
    assert f"error: no server at {dead}: is tensorflow/serving running?" in err
    status = subprocess.run([sys.executable, "-m", "serving.client", f"--server={server.address}",
                             "--status", "--model=text_encoder"], cwd=ROOT, env=ENV, text=True,
                            capture_output=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    assert status.stdout == "model text_encoder: status\n  version 1: AVAILABLE\n"
    usage = subprocess.run([sys.executable, "-m", "serving.client", "--help"], cwd=ROOT, env=ENV,
                           text=True, capture_output=True, timeout=120)
    # What --help says a query goes to (the docstring once said text_encoder for --text).
    assert '--text "a dog runs on the grass"            # text_to_image' in usage.stdout
    assert "--embed                   # text_encoder" in usage.stdout
    assert "--status" in usage.stdout and "--metadata" in usage.stdout
    for flag in ("--k", "--tag", "--ids", "--nprobe", "--embedding", "--like", "--[no]json"):
        assert f"  {flag}:" in usage.stdout, flag
    assert "--like img_0042 --k 5" in usage.stdout


# ----------------------------------------------------------------------------- REST

def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_api(server):
    base = f"{server.rest}/v1/models"
    sentences = ["a dog runs", "two cats"]
    grpc_answer = client.predict(server.stub, "text_encoder", {"sentences": sentences})
    status, body = http("POST", f"{base}/text_encoder:predict", {"instances": sentences})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], grpc_answer["embedding"], rtol=1e-6)
    status, body = http("POST", f"{base}/text_encoder/versions/1:predict",
                        {"signature_name": "serving_default",
                         "inputs": {"sentences": sentences}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], grpc_answer["embedding"], rtol=1e-6)

    image = png_bytes([0, 255, 0])
    status, body = http("POST", f"{base}/image_encoder/labels/stable:predict",
                        {"instances": [{"b64": base64.b64encode(image).decode()}]})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], [[0, 1, 0]], atol=1e-6)

    status, body = http("POST", f"{base}/text_to_image:predict", {"instances": ["a dog"]})
    assert status == 200 and set(body["predictions"][0]) == {"ids", "scores"}
    assert body["predictions"][0]["ids"][0].startswith("img")

    status, body = http("GET", f"{base}/text_encoder")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = http("GET", f"{base}/text_encoder/metadata")
    assert status == 200 and body["model_spec"]["name"] == "text_encoder"
    assert "sentences" in body["metadata"]["signature_def"]["signature_def"][
        "serving_default"]["inputs"]

    for url, payload, code, text in [
        (f"{base}/nope:predict", {"instances": ["x"]}, 404, "nope"),
        (f"{base}/image_encoder:predict", {"instances": [{"b64": base64.b64encode(
            b"not an image").decode()}]}, 400, ""),
        (f"{base}/image_encoder:predict", {"instances": [{"b64": "%%%"}]}, 400, "base64"),
        (f"{base}/text_encoder:predict", {"instances": [3]}, 400, "expects strings"),
        (f"{base}/text_encoder:predict", {"rows": ["x"]}, 400, "'instances'"),
    ]:
        status, body = http("POST", url, payload)
        assert status == code and text in body["error"], (url, payload, status, body)
    server.assert_alive()
    with urllib.request.urlopen(f"{server.rest}/monitoring/prometheus/metrics",
                                timeout=10) as response:
        metrics = response.read().decode()
    assert ':tensorflow:serving:request_count{api="predict",model_name="text_encoder",' \
           'status="OK"}' in metrics


# ----------------------------------------------------------------------------- shared names

def test_serving_constants_equal_the_exporters():
    """The exporter (keras_instance) writes the signature and warmup file under names the client
    and the stand-in look for (serving/constants.py, kept free of TensorFlow): both copies agree."""
    from keras_instance.export import layout
    from serving import constants

    assert constants.DEFAULT_SIGNATURE == layout.SIGNATURE == "serving_default"
    assert constants.WARMUP_FILE == layout.WARMUP_FILE
    assert constants.CONTAINER_MODELS_ROOT == layout.CONTAINER_BASE_PATH
    assert client.DEFAULT_SIGNATURE == constants.DEFAULT_SIGNATURE
    assert client.DEFAULT_SERVER.endswith(f":{constants.GRPC_PORT}")


# ----------------------------------------------------------------------------- checked-in configs

def test_checked_in_configs_parse():
    """serving/*.config are valid text protos of the messages TF Serving reads them as."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        text_format,
        wrappers_pb2,  # noqa: F401  (registers wrappers.proto)
    )

    from serving.standin import model_config

    config = model_config.load_model_config(os.path.join(ROOT, "serving", "models.config"))
    entries = {c.name: c for c in config.model_config_list.config}
    assert set(entries) == {"text_encoder", "image_encoder"}
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}" and entry.model_platform == "tensorflow"
        assert model_config.map_base_path(entry.base_path, "/srv/exports") == \
            f"/srv/exports/{name}"

    # BatchingParameters and MonitoringConfig are not in the tensorflow-serving-api wheel:
    # rebuild them field for field from session_bundle_config.proto / monitoring_config.proto.
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                   "max_enqueued_batches", "num_batch_threads"], start=1):
        batching.field.add(name=name, number=number, label=1, type=11,
                           type_name=".google.protobuf.Int64Value")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, label=1, type=8)
    prometheus.field.add(name="path", number=2, label=1, type=9)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, label=1, type=11,
                         type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(proto)

    def parse(message, path):
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(
            f"tensorflow.serving.{message}"))
        with open(os.path.join(ROOT, "serving", path)) as f:
            return text_format.Parse(f.read(), cls())

    params = parse("BatchingParameters", "batching.config")
    assert params.batch_timeout_micros.value == 0  # the guide's CPU starting point
    assert params.max_batch_size.value >= 32 and params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value == params.num_batch_threads.value
    metrics = parse("MonitoringConfig", "monitoring.config")
    assert metrics.prometheus_config.enable
    assert metrics.prometheus_config.path == "/monitoring/prometheus/metrics"
