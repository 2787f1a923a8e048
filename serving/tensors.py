"""TensorProto <-> numpy by hand, as `tf.make_tensor_proto` / `tf.make_ndarray` do, without TF.

The client sends strings (sentences, image bytes) and reads floats, strings and ints back; doing
the conversion here keeps TensorFlow (seconds to import) out of every client call.
"""
from __future__ import annotations

import numpy as np

from serving.protos import tensor_pb2, types_pb2

_DT = types_pb2.DataType
# numpy dtype ↔ TF DataType for numbers, sent as raw little-endian bytes (tensor_content).
_NUMERIC = {
    np.dtype(np.float16): _DT.Value("DT_HALF"), np.dtype(np.float32): _DT.Value("DT_FLOAT"),
    np.dtype(np.float64): _DT.Value("DT_DOUBLE"), np.dtype(np.int8): _DT.Value("DT_INT8"),
    np.dtype(np.int16): _DT.Value("DT_INT16"), np.dtype(np.int32): _DT.Value("DT_INT32"),
    np.dtype(np.int64): _DT.Value("DT_INT64"), np.dtype(np.uint8): _DT.Value("DT_UINT8"),
    np.dtype(np.uint16): _DT.Value("DT_UINT16"), np.dtype(np.uint32): _DT.Value("DT_UINT32"),
    np.dtype(np.uint64): _DT.Value("DT_UINT64"), np.dtype(np.bool_): _DT.Value("DT_BOOL"),
    np.dtype(np.complex64): _DT.Value("DT_COMPLEX64"),
    np.dtype(np.complex128): _DT.Value("DT_COMPLEX128"),
}
_NUMPY = {dt: dtype for dtype, dt in _NUMERIC.items()}
DT_STRING = _DT.Value("DT_STRING")
DT_BFLOAT16 = _DT.Value("DT_BFLOAT16")
# The repeated field holding each dtype's values when tensor_content is empty (tensor.proto).
_VALUE_FIELD = {"DT_HALF": "half_val", "DT_BFLOAT16": "half_val", "DT_FLOAT": "float_val",
                "DT_DOUBLE": "double_val", "DT_INT8": "int_val", "DT_INT16": "int_val",
                "DT_INT32": "int_val", "DT_UINT8": "int_val", "DT_UINT16": "int_val",
                "DT_INT64": "int64_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
                "DT_BOOL": "bool_val", "DT_COMPLEX64": "scomplex_val",
                "DT_COMPLEX128": "dcomplex_val"}


def dtype_name(dtype: int) -> str:
    """`DT_FLOAT` → 'float32', `DT_STRING` → 'string' (numpy's names where there is one)."""
    if dtype in _NUMPY:
        return _NUMPY[dtype].name
    name = _DT.Name(dtype) if dtype in _DT.values() else f"dtype {dtype}"
    return name[3:].lower() if name.startswith("DT_") else name


def _is_text(value) -> bool:
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (str, bytes))


def to_array(value) -> np.ndarray:
    """The array `tf.make_tensor_proto` would send: str → UTF-8 bytes (object array); Python
    floats → float32 and ints → int32 (int64 when too large); numpy arrays keep their dtype."""
    if isinstance(value, (str, bytes)):
        value = [value]
    is_numpy = isinstance(value, (np.ndarray, np.generic))
    array = np.asarray(value, dtype=object) if _is_text(value) else np.asarray(value)
    if array.dtype.kind in "US":
        array = array.astype(object)
    if array.dtype == object:
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel()]
        bad = [v for v in flat if not isinstance(v, bytes)]
        if bad:
            raise TypeError(f"cannot send {type(bad[0]).__name__} {bad[0]!r:.40} in a string "
                            f"tensor: give str or bytes values (or a numeric array)")
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    if not is_numpy:  # Python numbers: TensorFlow's defaults (an empty list is float32 too)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype == np.int64 and (array.size == 0 or (
                array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max)):
            array = array.astype(np.int32)
    if array.dtype not in _NUMERIC:
        raise TypeError(f"cannot send a {array.dtype} array: TF Serving takes strings, bools, "
                        f"ints, floats and complex numbers")
    return array


def to_tensor_proto(value) -> tensor_pb2.TensorProto:
    """A TensorProto from an array or a (nested) list; str is sent as UTF-8 bytes (DT_STRING)."""
    array = to_array(value)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype == object:
        proto.dtype = DT_STRING
        proto.string_val.extend(array.ravel().tolist())
    else:
        proto.dtype = _NUMERIC[array.dtype]
        proto.tensor_content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")) \
            .tobytes()
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The numpy array of a TensorProto (strings as bytes in an object array), as
    `tf.make_ndarray` gives it: values from tensor_content, or from the typed `*_val` field with
    the last value repeated to fill the shape (TF's compact form for constant tensors)."""
    shape = [d.size for d in proto.tensor_shape.dim]
    count = int(np.prod(shape, dtype=np.int64))
    name = _DT.Name(proto.dtype) if proto.dtype in _DT.values() else str(proto.dtype)
    if proto.dtype == DT_STRING:
        values = list(proto.string_val)
        values += [values[-1] if values else b""] * (count - len(values))
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return _reshape(out, shape, name)
    if proto.dtype == DT_BFLOAT16:  # no numpy bfloat16: widen to float32, exactly
        bits = (np.frombuffer(proto.tensor_content, "<u2") if proto.tensor_content
                else np.fromiter(proto.half_val, np.uint16))
        values = (bits.astype(np.uint32) << 16).view(np.float32)
    elif proto.dtype in _NUMPY:
        dtype = _NUMPY[proto.dtype]
        if proto.tensor_content:
            return _reshape(np.frombuffer(proto.tensor_content, dtype.newbyteorder("<"))
                            .astype(dtype), shape, name)
        raw = getattr(proto, _VALUE_FIELD[name])
        if name == "DT_HALF":
            values = np.fromiter(raw, np.uint16).view(np.float16)
        elif name.startswith("DT_COMPLEX"):
            pairs = np.fromiter(raw, np.float64).reshape(-1, 2)
            values = (pairs[:, 0] + 1j * pairs[:, 1]).astype(dtype)
        else:
            values = np.fromiter(raw, dtype)
    else:
        raise TypeError(f"cannot read a {name} tensor: only strings, bools, ints, floats and "
                        f"complex numbers")
    if values.size == 0:
        return np.zeros(shape, values.dtype)
    if values.size < count:
        values = np.pad(values, (0, count - values.size), "edge")
    return _reshape(values, shape, name)


def _reshape(values: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"a {name} tensor of shape {shape} holds {values.size} values")
    return values.reshape(shape)
