"""Element types as Paddle names them, with numpy arrays as the carrier: bfloat16 is held as uint16 bit patterns,
Paddle's own convention (``paddle.to_tensor`` of a uint16 array is a bfloat16 tensor, and ``.numpy()`` of a
bfloat16 tensor is a uint16 array). So a numpy uint16 array here always means bfloat16."""
import numpy as np

__all__ = ["DTYPES", "numpy_dtype", "paddle_name", "cast"]

DTYPES = ("float32", "bfloat16", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
FLOATS = ("float32", "bfloat16", "float16", "float64")


def numpy_dtype(name):
    """Little-endian numpy dtype carrying element type `name` (bfloat16 -> uint16 bits)."""
    return np.dtype("<u2" if name == "bfloat16" else name).newbyteorder("<")


def paddle_name(dtype):
    """Element-type name of a numpy dtype (uint16 -> "bfloat16"), or None if Paddle has no such type."""
    dtype = np.dtype(dtype)
    name = "bfloat16" if dtype.kind == "u" and dtype.itemsize == 2 else dtype.newbyteorder("=").name
    return name if name in DTYPES else None


def cast(array, name):
    """`array` as element type `name`; bfloat16 rounds to nearest even, as Paddle and torch round; `array` itself
    when it already has that type."""
    have = paddle_name(array.dtype)
    if have == name:
        return array
    if have == "bfloat16":
        wide = array.astype(np.uint32)
        wide <<= np.uint32(16)  # (in place: one temporary the size of the result, not two)
        array = wide.view(np.float32)
    if name != "bfloat16":
        return array.astype(name, copy=False)
    u = np.ascontiguousarray(array, np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    return np.where(np.isnan(array), (u >> np.uint32(16)).astype(np.uint16) | np.uint16(0x40), rounded)
