"""safetensors files: read through the `safetensors` package, memory-mapped and lazily; written tensor by tensor.

Reading: the package's ``safe_open`` parses and validates the header (JSON, dtypes, shapes, offsets that tile the
data section exactly, the 100 MB header limit) before anything else; a file it refuses raises `CheckpointError`
with its reason. Each tensor then comes back as a numpy array memory-mapping its bytes (copy-on-write: writing to
it never changes the file), so nothing is read until used and a tensor no longer referenced leaves memory. Element
types are Paddle's (bfloat16 as uint16 bits, see `_dtypes`); F8/F6/F4, U16-U64 and complex tensors are refused.

Writing is ours, in the package's exact layout (tensors ordered by dtype, then name; header padded with spaces;
tests compare the bytes): the package's ``serialize_file`` takes every tensor of a file at once, as pointers to
memory, so writing a 1.3B-parameter model would hold all of it; `save_safetensors` takes tensors one at a time,
even from producers called only when their bytes are due, through `atomic_write` (a failed or interrupted write
leaves the old file).
"""
import json
import os

import numpy as np

from ._dtypes import numpy_dtype, paddle_name
from ._files import open_regular
from .atomic import atomic_write
from .errors import CheckpointError

__all__ = ["load_safetensors", "save_safetensors", "safetensors_metadata", "safetensors_entries", "TensorInfo"]

CODES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "float16": "F16", "bfloat16": "BF16",
         "int32": "I32", "float32": "F32", "float64": "F64", "int64": "I64"}  # in the package's (ascending) order
_NAMES = {code: name for name, code in CODES.items()}
_RANK = {name: i for i, name in enumerate(CODES)}


class TensorInfo:
    """One tensor of a file: dtype (Paddle's name), shape, and where its bytes lie (absolute file offset)."""

    __slots__ = ("dtype", "shape", "offset", "nbytes")

    def __init__(self, dtype, shape, offset, nbytes):
        self.dtype, self.shape, self.offset, self.nbytes = dtype, tuple(shape), offset, nbytes


def _diagnose(path, problem):
    """The package's reason, made specific where its words are vague (a data section shorter than the header)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            data = os.fstat(f.fileno()).st_size - 8 - n
            header = json.loads(f.read(n)) if 0 <= data and n < 100_000_000 else {}
        for name, info in header.items():
            end = info["data_offsets"][1] if isinstance(info, dict) and name != "__metadata__" else 0
            if isinstance(end, int) and end > data >= 0:
                return (f"tensor {name[:200]!r} has data_offsets {info['data_offsets']} outside the data section of "
                        f"{data} bytes (truncated?)")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError, RecursionError):
        pass
    return f"it is not a valid safetensors file (truncated or corrupt?): {problem}"


def read_header(path):
    """({name: TensorInfo} in file order, metadata dict or None) of a safetensors file, validated by the package."""
    from safetensors import SafetensorError, safe_open

    f, _ = open_regular(path)  # (refuses directories and FIFOs, which the package would block on or misreport)
    with f:
        start = 8 + int.from_bytes(f.read(8), "little")
    try:
        with safe_open(os.fspath(path), framework="np") as st:
            metadata = st.metadata()
            entries, offset = {}, start
            for name in st.offset_keys():  # the package checked that the tensors tile the data section in this order
                view = st.get_slice(name)
                code, shape = view.get_dtype(), view.get_shape()
                if code not in _NAMES:
                    raise CheckpointError(path, f"tensor {name[:200]!r} has dtype {code}, which is not supported "
                                                f"(supported: {', '.join(CODES.values())})")
                nbytes = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(_NAMES[code]).itemsize
                entries[name] = TensorInfo(_NAMES[code], shape, offset, nbytes)
                offset += nbytes
    except SafetensorError as err:
        raise CheckpointError(path, _diagnose(path, str(err).replace("Error while deserializing header: ", ""))) \
            from None
    return entries, metadata


def safetensors_entries(path):
    """{name: (dtype name, shape)} from the validated header; no tensor data is read."""
    return {name: (e.dtype, e.shape) for name, e in read_header(path)[0].items()}


def safetensors_metadata(path):
    """The ``__metadata__`` dict (str -> str) of a safetensors file, or None if it has none."""
    return read_header(path)[1]


def mapped(path, info):
    """The tensor `info` of file `path` as a copy-on-write memory-mapped numpy array."""
    dtype = numpy_dtype(info.dtype)
    if info.nbytes == 0:
        return np.zeros(info.shape, dtype)
    count = info.nbytes // dtype.itemsize
    return np.memmap(path, dtype, mode="c", offset=info.offset, shape=(count,)).view(np.ndarray).reshape(info.shape)


def load_safetensors(path, names=None):
    """{name: memory-mapped numpy array} of a safetensors file (file order, or the order of `names`)."""
    entries, _ = read_header(path)
    if isinstance(names, str):
        names = [names]
    for name in names or ():
        if name not in entries:
            raise CheckpointError(path, f"it has no tensor named {str(name)[:200]!r}")
    return {name: mapped(path, entries[name]) for name in (entries if names is None else names)}


def _spec(path, name, value):
    """(dtype name, shape) of an array, a Paddle tensor, or a (dtype, shape, producer) triple."""
    if not isinstance(name, str) or name == "__metadata__":
        raise CheckpointError(path, f"tensor name {name!r} is not allowed (names are str, not '__metadata__')",
                              action="save")
    if isinstance(value, tuple):
        return value[0], tuple(value[1])
    if isinstance(value, np.ndarray):
        dtype = paddle_name(value.dtype)
    elif hasattr(value, "data_ptr"):  # a paddle.Tensor (this module does not import paddle)
        dtype = str(value.dtype).rsplit(".", 1)[-1]
    else:
        raise CheckpointError(path, f"tensor {name!r} is a {type(value).__name__}, not a numpy array", action="save")
    if dtype not in CODES:
        raise CheckpointError(path, f"tensor {name!r} has dtype {value.dtype}, which safetensors files here do not "
                                    f"hold", action="save")
    return dtype, tuple(value.shape)


def _bytes(value, dtype):
    if isinstance(value, tuple):
        value = value[2]()
    if not isinstance(value, np.ndarray):
        value = value.numpy()  # a Paddle tensor: bfloat16 comes out as uint16 bits
    return memoryview(np.ascontiguousarray(value, numpy_dtype(dtype)).reshape(-1).view(np.uint8))


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: value} to `path` atomically. A value is a numpy array (uint16 = bfloat16), a Paddle tensor, or
    a triple (dtype name, shape, producer) whose producer returns the array when its bytes are written, so that
    only one tensor is in memory at a time (producers are called in the order of `tensors`). CheckpointError
    before any file is created for a bad name or dtype."""
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(path, "metadata must be a dict of str -> str", action="save")
    specs = sorted(((name, *_spec(path, name, value)) for name, value in tensors.items()),
                   key=lambda s: (-_RANK[s[1]], s[0]))
    header = {} if metadata is None else {"__metadata__": dict(metadata)}
    offset = 0
    for name, dtype, shape in specs:
        nbytes = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dtype).itemsize
        header[name] = {"dtype": CODES[dtype], "shape": [int(d) for d in shape], "data_offsets": [offset,
                                                                                                  offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path) as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        start = f.tell()
        # produced in the caller's order, each written at its place in the file's order: a producer may rely on
        # the one before it (int8 quantization makes a weight and then its scales)
        specs = {name: (dtype, shape) for name, dtype, shape in specs}
        for name in tensors:
            dtype, shape = specs[name]
            begin, end = header[name]["data_offsets"]
            data = _bytes(tensors[name], dtype)
            if len(data) != end - begin:
                raise CheckpointError(path, f"tensor {name!r} was produced with another shape than {list(shape)}",
                                      action="save")
            f.seek(start + begin)
            f.write(data)
