"""safetensors files with numpy only: a validating reader and an atomic writer, compatible with the
``safetensors`` package in both directions.

Format: 8-byte little-endian header length N, N bytes of a JSON object (``name -> {"dtype", "shape",
"data_offsets": [begin, end]}``, offsets relative to the data section that follows, plus an optional
``"__metadata__"`` object of str -> str), then the data section (little-endian, C order).

Checks made before any tensor byte is read (each failure raises `CheckpointError` naming the file):
the file is a regular file of at least 8 bytes; N is at most 100,000,000 (the safetensors limit) and fits in the
file; the header is UTF-8, starts with ``{``, is a JSON object without duplicate keys or NaN/Infinity constants;
``__metadata__`` (if present) maps str to str; every entry has exactly the keys dtype, shape, data_offsets; dtype
is one of BOOL U8 I8 I16 U16 I32 U32 I64 U64 F16 BF16 F32 F64 C64 (F8_*/F6_*/F4 are recognised but refused as
unsupported); shape is a list of at most 64 non-negative ints; data_offsets are two ints with
0 <= begin <= end <= data length and end - begin == prod(shape) * itemsize; and the entries, in offset order, tile
the data section exactly: no overlaps, no holes, no trailing bytes (the rules of the safetensors package).

Reading returns native-order numpy arrays; **BF16 is widened to float32 exactly**. Writing accepts numpy arrays of
the dtypes above (any order, any strides; written C-contiguous little-endian) and `BFloat16` objects (BF16), lays
tensors out in the order the safetensors package uses (by its dtype order, then by name), pads the header with spaces to
a multiple of 8, and replaces the file atomically.
"""
import json

import numpy as np

from ._files import open_regular as _open
from ._dtypes import LE, BFloat16, decode_storage, dtype_name
from .atomic import atomic_write
from .errors import CheckpointError

__all__ = ["load_safetensors", "save_safetensors", "safetensors_metadata", "safetensors_entries"]

MAX_HEADER_BYTES = 100_000_000
_MAX_DIMS = 64
_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
           "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16",
           "F32": "float32", "F64": "float64", "C64": "complex64"}
_UNSUPPORTED = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"}
_CODE = {elem: code for code, elem in _DTYPES.items()}
# The safetensors package writes tensors sorted by dtype (descending, in the order of its Dtype enum), then name.
_DTYPE_RANK = {code: i for i, code in enumerate(
    ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16",
     "I32", "U32", "F32", "C64", "F64", "I64", "U64"])}


class _Entry:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _bad_constant(name):
    raise ValueError(f"non-JSON constant {name}")


def _read_header(path, f, size):
    """Returns (entries in header order, metadata or None, data section start)."""
    if size < 8:
        raise CheckpointError(path, f"it has {size} bytes, too few for a safetensors header")
    head = f.read(8)
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"its header length {n} is over the safetensors limit of {MAX_HEADER_BYTES} "
                                    f"bytes (not a safetensors file?)")
    if 8 + n > size:
        raise CheckpointError(path, f"its header length {n} is larger than the file ({size} bytes)")
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError(path, "the file is truncated inside its header")
    if not raw.startswith(b"{"):
        raise CheckpointError(path, "its header does not start with '{' (not a safetensors file?)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(path, f"its header is not valid JSON: {str(e)[:200]}") from None
    if type(header) is not dict:
        raise CheckpointError(path, "its header is not a JSON object")
    data_len = size - 8 - n
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if type(metadata) is not dict or not all(type(k) is str and type(v) is str for k, v in metadata.items()):
            raise CheckpointError(path, "its __metadata__ is not an object of strings")
    entries = []
    for name, info in header.items():
        def bad(problem):
            return CheckpointError(path, f"tensor {name[:200]!r} {problem}")
        if type(info) is not dict or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad("is not described by exactly dtype, shape and data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if type(code) is not str or code not in _DTYPES:
            if code in _UNSUPPORTED:
                raise bad(f"has dtype {code}, which is not supported")
            raise bad(f"has an unknown dtype {str(code)[:40]!r}")
        if type(shape) is not list or len(shape) > _MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"has an invalid shape {str(shape)[:80]} (must be a list of non-negative ints)")
        if type(offsets) is not list or len(offsets) != 2 or not all(type(o) is int for o in offsets):
            raise bad(f"has invalid data_offsets {str(offsets)[:80]}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise bad(f"has data_offsets [{begin}, {end}] outside the data section of {data_len} bytes")
        elem = _DTYPES[code]
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * LE[elem].itemsize:
            raise bad(f"has data_offsets [{begin}, {end}] ({end - begin} bytes) but dtype {code} and shape "
                      f"{shape} need {numel * LE[elem].itemsize} bytes")
        entries.append(_Entry(name, elem, tuple(shape), begin, end))
    position = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin < position:
            raise CheckpointError(path, f"tensor {e.name[:200]!r} overlaps the tensor before it "
                                        f"(data_offsets [{e.begin}, {e.end}])")
        if e.begin > position:
            raise CheckpointError(path, f"its data section has a hole of {e.begin - position} bytes before tensor "
                                        f"{e.name[:200]!r}")
        position = e.end
    if position != data_len:
        raise CheckpointError(path, f"its data section has {data_len - position} bytes after the last tensor "
                                    f"(or the header does not describe the file)")
    return entries, metadata, 8 + n


def safetensors_entries(path):
    """{name: (dtype name, shape)} of a safetensors file, from its validated header (no tensor data read).

    dtype names are numpy names ("float32", ...; "bfloat16" for BF16, which load_safetensors widens)."""
    f, size = _open(path)
    with f:
        entries, _, _ = _read_header(path, f, size)
    return {e.name: (e.dtype, e.shape) for e in entries}


def safetensors_metadata(path):
    """The ``__metadata__`` dict (str -> str) of a safetensors file, or None if it has none (header validated)."""
    f, size = _open(path)
    with f:
        _, metadata, _ = _read_header(path, f, size)
    return metadata


def load_safetensors(path, names=None):
    """Reads a safetensors file into {name: numpy array} (header order, or the order of `names`).

    `names`: iterable of tensor names to read (others are not read); a name not in the file is refused.
    The whole header is validated before any tensor is read (see the module docstring). BF16 -> float32 exactly.
    """
    f, size = _open(path)
    with f:
        entries, _, start = _read_header(path, f, size)
        by_name = {e.name: e for e in entries}
        if names is None:
            wanted = entries
        else:
            if isinstance(names, str):
                names = [names]
            wanted = []
            for name in names:
                if name not in by_name:
                    raise CheckpointError(path, f"it has no tensor named {str(name)[:200]!r}")
                wanted.append(by_name[name])
        out = {}
        for e in wanted:
            raw = np.empty(e.end - e.begin, np.uint8)
            f.seek(start + e.begin)
            view = memoryview(raw)
            got = 0
            while got < len(raw):
                n = f.readinto(view[got:])
                if not n:
                    raise CheckpointError(path, f"the file is truncated inside tensor {e.name[:200]!r}")
                got += n
            out[e.name] = decode_storage(raw, e.dtype).reshape(e.shape)
    return out


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array or BFloat16} to `path` atomically as a safetensors file.

    `metadata`: optional dict of str -> str, stored as ``__metadata__``. Raises CheckpointError (before creating
    any file) for a name that is not a str or is "__metadata__", or an array of a dtype safetensors cannot hold.
    """
    def fail(problem):
        return CheckpointError(path, problem, action="save")

    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise fail("metadata must be a dict of str -> str")
    items = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise fail(f"tensor name {name!r} is not allowed (names are str, not '__metadata__')")
        if isinstance(value, BFloat16):
            data, elem, shape = np.ascontiguousarray(value.bits, dtype="<u2"), "bfloat16", value.bits.shape
        else:
            if not isinstance(value, np.ndarray):
                raise fail(f"tensor {name!r} is a {type(value).__name__}, not a numpy array or BFloat16")
            elem = dtype_name(value.dtype)
            if elem not in _CODE:
                raise fail(f"tensor {name!r} has dtype {value.dtype}, which safetensors cannot hold")
            data = np.ascontiguousarray(value, dtype=LE[elem] if elem != "bool" else np.bool_)
            shape = value.shape
        items.append((name, elem, shape, data))
    items.sort(key=lambda t: (-_DTYPE_RANK[_CODE[t[1]]], t[0]))
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, elem, shape, data in items:
        header[name] = {"dtype": _CODE[elem], "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER_BYTES:
        raise fail(f"the header would be {len(raw)} bytes, over the safetensors limit")
    with atomic_write(path) as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for _, _, _, data in items:
            if data.nbytes:
                f.write(memoryview(data.reshape(-1).view(np.uint8)))
