"""serving.client without TensorFlow: TensorProtos built and read by hand, as TF builds and reads
them, and a client process that never runs `tensorflow/__init__.py` (seconds per call)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

from serving import client  # noqa: E402

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

VALUES = [
    ["a dog runs", "Ünïcode, punctuation!", ""],
    [b"\xff\xd8 image bytes\x00", b""],
    "a scalar string, sent as [1]",
    [["a", "b"], ["c", "d"]],
    [1.5, 2.0],                                  # Python floats: float32, as TF
    [1, 2, 3],                                   # Python ints: int32
    [2 ** 40],                                   # too large for int32: int64
    [True, False],
    [],                                          # empty: float32
    np.array([1.0, 2.0]),                        # numpy keeps its dtype: float64
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([[1, -2]], np.int8), np.array([7], np.uint16), np.array([5], np.uint64),
    np.array([0.5, -1.25], np.float16), np.array([1 + 2j], np.complex64),
    np.zeros((2, 0), np.float32), np.float32(3.0),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:30])
def test_to_tensor_proto_sends_what_tensorflow_sends(value):
    ours = client.to_tensor_proto(value)
    theirs = tf.make_tensor_proto([value] if isinstance(value, str) else value)
    assert ours.dtype == theirs.dtype
    assert ours.tensor_shape == theirs.tensor_shape
    got, want = tf.make_ndarray(ours), tf.make_ndarray(theirs)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("proto", [
    tf.make_tensor_proto(np.arange(12, dtype=np.float32).reshape(3, 4)),  # tensor_content
    tf.make_tensor_proto(2.5, dtype=tf.float32, shape=[2, 3]),            # float_val, repeated
    tf.make_tensor_proto([1.0, 2.0, 3.0], dtype=tf.float64, shape=[5]),   # last value fills
    tf.make_tensor_proto(np.array([[b"ab", b"c"], [b"", b"\x00z"]], object)),
    tf.make_tensor_proto(b"one", shape=[3]),                             # string_val, repeated
    tf.make_tensor_proto(7, dtype=tf.int32, shape=[2]),
    tf.make_tensor_proto(np.array([3], np.int64)),
    tf.make_tensor_proto(np.array([200], np.uint8)),
    tf.make_tensor_proto(np.array([4000000000], np.uint32)),
    tf.make_tensor_proto(np.array([True, False, True])),
    tf.make_tensor_proto(np.array([0.5], np.float16)),
    tf.make_tensor_proto(np.array([1 - 1j], np.complex128)),
    tf.make_tensor_proto([], dtype=tf.float32, shape=[0, 4]),
], ids=lambda p: f"{tf.dtypes.as_dtype(p.dtype).name}{[d.size for d in p.tensor_shape.dim]}")
def test_from_tensor_proto_reads_what_tensorflow_reads(proto):
    got, want = client.from_tensor_proto(proto), tf.make_ndarray(proto)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_bfloat16_is_read_as_float32_exactly():
    values = np.array([1.5, -0.0078125, 3e38], np.float32)
    proto = tf.make_tensor_proto(tf.constant(values, tf.bfloat16))
    got = client.from_tensor_proto(proto)
    want = tf.make_ndarray(proto).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_what_cannot_be_sent_or_read_says_why():
    with pytest.raises(TypeError, match="cannot send int 3 in a string tensor"):
        client.to_tensor_proto(["a", 3])
    with pytest.raises(TypeError, match="cannot send a datetime64"):
        client.to_tensor_proto(np.array(["2024-01-01"], "datetime64[D]"))
    proto = tf.make_tensor_proto([b"one", b"two"])
    proto.tensor_shape.dim[0].size = 1
    with pytest.raises(ValueError, match="shape \\[1\\] holds 2 values"):
        client.from_tensor_proto(proto)
    resource = tf.make_tensor_proto(np.array([1], np.int32))
    resource.dtype = tf.resource.as_datatype_enum
    with pytest.raises(TypeError, match="cannot read a DT_RESOURCE tensor"):
        client.from_tensor_proto(resource)


def test_a_client_process_never_imports_tensorflow():
    """Importing the client, building a request and reading a response leave TensorFlow
    unloaded; TensorFlow imported afterwards works and shares the message classes."""
    script = textwrap.dedent("""
        import sys, time
        start = time.perf_counter()
        from serving import client
        from serving.protos import predict_pb2
        request = predict_pb2.PredictRequest()
        request.inputs["sentences"].CopyFrom(client.to_tensor_proto(["a red car"]))
        request.inputs["x"].CopyFrom(client.to_tensor_proto([[1.5, 2.5]]))
        answer = {k: client.from_tensor_proto(v) for k, v in request.inputs.items()}
        # An RPC that fails fast (nothing listens on port 1) goes through grpc as a call would.
        assert client.run(server="127.0.0.1:1", texts=["x"], deadline_s=5) == 1
        assert "tensorflow" not in sys.modules, sorted(
            m for m in sys.modules if m.startswith("tensorflow."))[:5]
        print(f"client ready and called in {time.perf_counter() - start:.2f} s")
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2 as tf_predict_pb2
        assert tf_predict_pb2.PredictRequest is predict_pb2.PredictRequest
        request.inputs["y"].CopyFrom(tf.make_tensor_proto([b"z"]))
        assert tf.make_ndarray(request.inputs["sentences"]).tolist() == [b"a red car"]
        assert tf.make_ndarray(request.inputs["x"]).dtype == answer["x"].dtype
        print("tensorflow after the client: ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "tensorflow after the client: ok" in proc.stdout
