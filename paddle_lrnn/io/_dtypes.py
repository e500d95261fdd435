"""Element types shared by the torch and safetensors formats, and exact bfloat16 <-> float32 conversion."""
import numpy as np

__all__ = ["BFloat16", "bfloat16_bits_to_float32", "float32_to_bfloat16_bits"]


def bfloat16_bits_to_float32(bits):
    """uint16 array of bfloat16 bit patterns -> float32 array with exactly the same values (NaN payloads kept)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"expected uint16 bfloat16 bits, got {bits.dtype}")
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def float32_to_bfloat16_bits(values):
    """float32 array -> uint16 bfloat16 bit patterns, rounding to nearest even (the rounding torch uses).

    Exact (no rounding) for values that are already bfloat16 numbers, e.g. ones widened by the loaders here.
    NaNs stay NaNs (quiet, sign kept); infinities stay infinities."""
    values = np.asarray(values, dtype=np.float32)
    u = values.view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded = np.where(nan, ((u >> np.uint32(16)).astype(np.uint16) | np.uint16(0x0040)), rounded)
    return rounded.astype(np.uint16)


class BFloat16:
    """Marks an array to be stored as bfloat16 by save_torch_checkpoint and save_safetensors.

    ``BFloat16(array)`` rounds a float array to bfloat16 (round to nearest even; exact for arrays that hold
    bfloat16 values, such as the float32 arrays the loaders return for bfloat16 tensors). ``BFloat16.from_bits``
    wraps raw uint16 bit patterns instead. ``.bits`` holds the C-contiguous uint16 patterns, ``.shape`` the shape,
    ``.to_float32()`` the exact float32 values. Wrap an array once and reuse the same BFloat16 object where a
    tensor is shared (tied weights): the same object becomes one shared storage.
    """

    __slots__ = ("bits",)

    def __init__(self, array):
        array = np.asarray(array)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"BFloat16: expected a numeric array, got dtype {array.dtype}")
        self.bits = np.ascontiguousarray(float32_to_bfloat16_bits(array.astype(np.float32)))

    @classmethod
    def from_bits(cls, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"BFloat16.from_bits: expected uint16 bit patterns, got dtype {bits.dtype}")
        obj = cls.__new__(cls)
        obj.bits = np.ascontiguousarray(bits)
        return obj

    @property
    def shape(self):
        return self.bits.shape

    def to_float32(self):
        return bfloat16_bits_to_float32(self.bits)

    def __repr__(self):
        return f"BFloat16(shape={self.bits.shape})"


# numpy dtypes of the element types both formats share (little-endian; bfloat16 handled separately).
LE = {
    "float64": np.dtype("<f8"), "float32": np.dtype("<f4"), "float16": np.dtype("<f2"),
    "int64": np.dtype("<i8"), "int32": np.dtype("<i4"), "int16": np.dtype("<i2"), "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"), "uint32": np.dtype("<u4"), "uint16": np.dtype("<u2"), "uint8": np.dtype("u1"),
    "bool": np.dtype("?"), "complex64": np.dtype("<c8"), "complex128": np.dtype("<c16"),
    "bfloat16": np.dtype("<u2"),  # stored as raw bits, widened to float32 after reading
}
ITEMSIZE = {name: dt.itemsize for name, dt in LE.items()}


def dtype_name(dtype):
    """Canonical element-type name of a numpy dtype (byte order ignored), or None if not supported."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        return None
    name = "bool" if dtype.kind == "b" else dtype.newbyteorder("=").name
    return name if name in LE and name != "bfloat16" else None


def decode_storage(raw_u8, name, big_endian=False):
    """Raw bytes (uint8 array) of a storage of element type `name` -> native numpy array (bfloat16 -> float32).

    May reuse raw_u8's memory. bool bytes other than 0/1 become True."""
    if name == "bool":
        return raw_u8.view(np.uint8) != 0
    dt = LE[name]
    arr = raw_u8.view(dt.newbyteorder(">") if big_endian else dt)
    if not arr.dtype.isnative:
        arr = arr.byteswap().view(arr.dtype.newbyteorder("="))  # one copy, now in native order
    if name == "bfloat16":
        return bfloat16_bits_to_float32(arr.view(np.uint16))
    return arr.view(dt.newbyteorder("="))
