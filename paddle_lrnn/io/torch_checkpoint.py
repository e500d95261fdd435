"""Read and write ``torch.save`` checkpoints with numpy only: no torch, and nothing from the file is ever run.

Reading (`load_torch_checkpoint`)
---------------------------------
Accepted formats:

* the zip format torch.save has written since torch 1.6 (``<archive>/data.pkl``, ``<archive>/data/<key>``
  storages, ``byteorder``, ``version``...), whatever the pickle protocol (0-5) and the byte order (``byteorder``
  record "little" or "big"; absent means little, as torch assumes);
* the legacy format (``torch.save(..., _use_new_zipfile_serialization=False)`` and torch < 1.6 by default): a
  chain of pickles (magic number, protocol 1001, system info, the object, the storage keys) followed by the raw
  storages. Only little-endian legacy files are accepted.

Refused: the pre-0.4 tar format, TorchScript archives (``torch.jit.save``), plain pickles, anything that is not a
regular file (directories, FIFOs, devices), and every file that fails a check below. All refusals raise
`CheckpointError` naming the file and the problem.

What the pickle may contain. The file's pickle is run by a small stack machine (`._pickle.SafeUnpickler`) that
builds plain values itself and never imports or calls a name from the file. A global reference is looked up in
the allow-list below, where every entry maps to this module's own code; anything else is refused, naming it
("it references os.system, which is not a tensor, storage or plain container"). The allow-list, and why:

* ``torch._utils._rebuild_tensor_v2`` (every dense tensor), ``_rebuild_tensor_v3`` (tensors of the newer dtypes
  such as uint16, on an untyped storage), ``_rebuild_tensor`` (older files), ``_rebuild_parameter``,
  ``_rebuild_parameter_with_state`` (``nn.Parameter`` objects), ``torch._tensor._rebuild_from_type_v2`` with
  ``torch.Tensor`` / ``torch.nn.parameter.Parameter`` (tensors that carry Python attributes; the attributes are
  dropped): these become numpy arrays.
* storage classes ``torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool,ComplexFloat,ComplexDouble}
  Storage`` (also as ``torch.cuda.*``: the location is ignored, all data lands in host memory) and
  ``torch.UntypedStorage`` / ``torch.storage.UntypedStorage``: they only name the element type of a storage.
* ``collections.OrderedDict`` (state dicts; its ``_metadata`` attribute is kept), ``torch.Size`` (-> tuple),
  ``torch.device`` (-> str such as "cuda:0"), torch dtype objects such as ``torch.float32`` (-> `TorchDtype`, a
  str subclass "torch.float32"), and the builtins the pickle protocol itself uses for plain values:
  ``_codecs.encode`` (bytes, latin-1 only), ``builtins.bytes`` and ``builtins.bytearray`` (from bytes only, never
  from a size), ``builtins.set``, ``builtins.frozenset``, ``builtins.complex`` (also spelled ``__builtin__.*``).
  The exact list is `ALLOWED_GLOBALS`. None of these names is imported: each maps to a function here that checks
  its arguments.

Quantized, sparse, nested, meta and float8/complex32 tensors are refused with a message naming them; so are
pickled nn.Module objects (whole-model saves) and numpy objects inside a checkpoint (torch's own weights-only
loader refuses those too). The pickle part of a file may not exceed 1 GiB. Dict keys and set elements must be
strings, numbers (ints of at most 60 bits) or tuples of up to 16 of these, at most 4096 such tuples (deeply nested
or colliding keys would make hashing them crash or take forever).

Checks before any tensor data is read: the zip directory (stored members only, none compressed, none
overlapping, each lying inside the file: no zip bombs), the pickle (run once without reading data), then for every
storage the persistent id (``('storage', <storage class>, key, location, numel)``; the key a plain name inside
the archive), that the same key is never claimed with two element types or sizes, that its record exists with
exactly ``numel * itemsize`` bytes, and for every tensor that offset, shape and strides are non-negative integers
whose last element lies inside its storage. Only then the pickle is run again and storages are read, each once,
when first used (a storage shared by several tensors is read once; memory is that of the storages the result
refers to). CRC-32s are verified while reading.

What comes back: the pickled structure with plain Python values (dict keeps key order, OrderedDict stays one) and
each tensor as a numpy array of its dtype, shape and strides (a view of its storage, so tensors sharing a storage
share memory; identical views of one storage, e.g. tied weights, come back as the very same array object).
**bfloat16 tensors are widened to float32 exactly** (every bfloat16 value is a float32 value; re-save with
`BFloat16` to get bfloat16 again). A bare storage becomes a 1-D array (bytes for an untyped one). Views whose
elements overlap (stride 0 from ``expand``) come back read-only. ``requires_grad``, backward hooks and Python
attributes of tensors are dropped.

Writing (`save_torch_checkpoint`)
---------------------------------
Writes the zip format of torch.save (protocol 2 pickle, records aligned to 64 bytes, ``byteorder`` "little",
``version`` 3) that ``torch.load(path)`` (weights_only=True, the default) reads as the same structure. Accepted
values: dict (key order kept; OrderedDict stays OrderedDict, other dict subclasses become dict; keys as the
reader admits them), list, tuple,
str, int, float, bool, None, bytes, bytearray,
`TorchDtype`, numpy scalars (as the Python scalar), numpy arrays of float64/32/16, int64/32/16/8,
uint8/16/32/64, bool, complex64/128, and `BFloat16` (bfloat16 tensors). Arrays that are views of one C-contiguous
numpy array (the same object twice, slices, transposes: the same base buffer) are written as one storage with
offsets and strides, as torch writes views, so tied weights stay tied; the whole base buffer is written once.
Other arrays are written as their own contiguous little-endian storage. The file is written atomically.
"""
import hashlib
import os
import re
from collections import OrderedDict

import numpy as np

from . import _zip
from ._files import open_regular as _open_regular
from ._dtypes import ITEMSIZE, LE, BFloat16, bfloat16_bits_to_float32, decode_storage, dtype_name
from ._pickle import KeyCheck, PickleWriter, Refused, SafeCall, SafeUnpickler, Truncated, brief
from .atomic import atomic_write
from .errors import CheckpointError

__all__ = ["load_torch_checkpoint", "save_torch_checkpoint", "TorchDtype", "BFloat16", "ALLOWED_GLOBALS"]

# ---------------------------------------------------------------------------------------------------------------
# element types

_STORAGE_ELEM = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_QUANTIZED_STORAGES = {"QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage"}
_SAVE_STORAGE = {elem: name for name, elem in _STORAGE_ELEM.items()}  # elem -> storage class (v2); others use v3

_DTYPE_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
                  "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32"}
_DTYPE_NAME_RE = re.compile(r"(?:float|bfloat|int|uint|complex|bits|qint|quint)[0-9]{0,3}(?:_?[a-z0-9]{1,12}){0,3}"
                            r"|bool|double|half|long|short|cfloat|cdouble|chalf")
_MAX_DIMS = 64
_MAX_INT = 1 << 62
_OVERLAP_LIMIT = 1 << 30  # an overlapping view (stride 0) may describe at most this many bytes beyond its storage
_STORAGE_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAX_PICKLE_BYTES = 1 << 30  # the pickle part of a checkpoint (not its tensors) is KBs to MBs; refuse absurd ones
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class TorchDtype(str):
    """A torch dtype object found in a checkpoint, e.g. ``torch.float32``: the str "torch.float32".

    ``.name`` is the canonical short name ("float32"). save_torch_checkpoint writes it back as the torch dtype."""

    __slots__ = ()

    def __new__(cls, name):
        name = str(name)
        if name.startswith("torch."):
            name = name[6:]
        return super().__new__(cls, "torch." + _DTYPE_ALIASES.get(name, name))

    @property
    def name(self):
        return self[6:]

    def __repr__(self):
        return str.__str__(self)


ALLOWED_GLOBALS = frozenset(
    [f"torch._utils.{n}" for n in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_tensor",
                                  "_rebuild_parameter", "_rebuild_parameter_with_state")]
    + ["torch._tensor._rebuild_from_type_v2", "torch.tensor._rebuild_from_type_v2",
       "torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter",
       "collections.OrderedDict", "torch.Size", "torch.device", "_codecs.encode"]
    + [f"{m}.{n}" for m in ("builtins", "__builtin__") for n in ("set", "frozenset", "bytes", "bytearray", "complex")]
    + [f"{m}.{n}" for m in ("torch", "torch.cuda") for n in _STORAGE_ELEM]
    + ["torch.UntypedStorage", "torch.storage.UntypedStorage"]
    + ["torch.<dtype>"])
_TENSOR_CLASSES = {"torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"}


def _ascii(v):
    if type(v) is bytes:
        try:
            return v.decode("ascii")
        except UnicodeDecodeError:
            return None
    return v if type(v) is str else None


def _check_int(v, what):
    if type(v) is not int or not 0 <= v < _MAX_INT:
        raise Refused(f"{what} is {brief(v, 40)} ({type(v).__name__}), not a non-negative integer")
    return v


def _check_dims(v, what):
    if type(v) not in (tuple, list) or len(v) > _MAX_DIMS:
        raise Refused(f"{what} is a {type(v).__name__} {brief(v, 60)}, not a tuple of at most {_MAX_DIMS} ints")
    return tuple(_check_int(x, what) for x in v)


def _self_overlapping(shape, strides):
    dims = sorted((st, n) for n, st in zip(shape, strides) if n > 1)
    reach = 0  # furthest element offset reachable with the smaller-stride dims
    for st, n in dims:
        if st <= reach:
            return True
        reach += (n - 1) * st
    return False


class _StorageType:
    __slots__ = ("qualname", "elem")

    def __init__(self, qualname, elem):
        self.qualname = qualname
        self.elem = elem  # element type name, or "untyped" (bytes)


class _TensorClass:
    __slots__ = ("qualname",)

    def __init__(self, qualname):
        self.qualname = qualname


class _StorageRef:
    """A storage as the pickle describes it: key of its data, element type, element count; optional sub-view."""

    __slots__ = ("key", "elem", "numel", "offset", "view_key")

    def __init__(self, key, elem, numel, offset=0, view_key=None):
        self.key, self.elem, self.numel, self.offset, self.view_key = key, elem, numel, offset, view_key

    @property
    def nbytes(self):
        return self.numel * (1 if self.elem == "untyped" else ITEMSIZE[self.elem])


class _TensorPlan:
    __slots__ = ()


_TENSOR_PLAN = _TensorPlan()


# ---------------------------------------------------------------------------------------------------------------
# storage sources

class _ZipSource:
    def __init__(self, f, members, prefix):
        self.f, self.members, self.prefix = f, members, prefix

    def check(self, ref):
        m = self.members.get(f"{self.prefix}data/{ref.key}")
        if m is None:
            raise Refused(f"storage {ref.key!r} has no record data/{ref.key} in the archive")
        if m.size != ref.nbytes:
            raise Refused(f"storage {ref.key!r} is declared as {ref.numel} x {ref.elem} ({ref.nbytes} bytes) "
                          f"but its record holds {m.size} bytes")

    def read(self, key):
        m = self.members[f"{self.prefix}data/{key}"]
        out = np.empty(m.size, np.uint8)
        _zip.read_into(self.f, m, out)
        return out


class _LegacySource:
    """Storages of the legacy format: after the pickles, for each key in order, int64 LE count + raw data."""

    def __init__(self, f, file_size, start, keys, roots):
        self.f = f
        self.where = {}
        offset = start
        for key in keys:
            ref = roots.get(key)
            if ref is None:
                raise Refused(f"its storage list names {key!r}, which the pickle never uses")
            f.seek(offset)
            head = f.read(8)
            if len(head) != 8:
                raise Refused(f"the file is truncated: storage {key!r} should start at byte {offset}")
            count = int.from_bytes(head, "little", signed=True)
            if count != ref.numel:
                raise Refused(f"storage {key!r} is declared with {ref.numel} elements but its data says {count}")
            if offset + 8 + ref.nbytes > file_size:
                raise Refused(f"the file is truncated: storage {key!r} needs {ref.nbytes} bytes at byte "
                              f"{offset + 8}, the file has {file_size}")
            self.where[key] = (offset + 8, ref.nbytes)
            offset += 8 + ref.nbytes

    def check(self, ref):
        if ref.key not in self.where:
            raise Refused(f"storage {ref.key!r} is used by the pickle but has no data in the file")

    def read(self, key):
        offset, nbytes = self.where[key]
        out = np.empty(nbytes, np.uint8)
        self.f.seek(offset)
        view = memoryview(out)
        got = 0
        while got < nbytes:
            n = self.f.readinto(view[got:])
            if not n:
                raise Refused(f"the file is truncated inside storage {key!r}")
            got += n
        return out


# ---------------------------------------------------------------------------------------------------------------
# one load: the allow-listed callables and the hooks of the pickle machine

class _Session:
    def __init__(self, legacy=False, big_endian=False):
        self.legacy = legacy
        self.big_endian = big_endian
        self.source = None
        self.materialize = False
        self.roots = {}      # key -> _StorageRef (the whole storage)
        self.subviews = {}   # legacy view key -> (root key, offset, numel)
        self.arrays = {}     # (key, offset, numel) -> decoded storage array        (second pass)
        self.refs = {}       # id(storage array) -> _StorageRef                     (second pass)
        self.tensors = {}    # view description -> tensor array                      (second pass)
        self.tensor_ids = set()
        c = SafeCall
        rebuild = {
            "_rebuild_tensor_v2": c("torch._utils._rebuild_tensor_v2", self.rebuild_tensor_v2),
            "_rebuild_tensor_v3": c("torch._utils._rebuild_tensor_v3", self.rebuild_tensor_v3),
            "_rebuild_tensor": c("torch._utils._rebuild_tensor", self.rebuild_tensor),
            "_rebuild_parameter": c("torch._utils._rebuild_parameter", self.rebuild_parameter),
            "_rebuild_parameter_with_state": c("torch._utils._rebuild_parameter_with_state",
                                               self.rebuild_parameter_with_state),
        }
        self.tensor_rebuilders = set(rebuild.values())
        self.calls = {("torch._utils", k): v for k, v in rebuild.items()}
        from_type = c("torch._tensor._rebuild_from_type_v2", self.rebuild_from_type_v2)
        self.calls[("torch._tensor", "_rebuild_from_type_v2")] = from_type
        self.calls[("torch.tensor", "_rebuild_from_type_v2")] = from_type
        key = KeyCheck()  # the keys these callables admit (the machine checks those of its own opcodes)
        self.calls[("collections", "OrderedDict")] = c("collections.OrderedDict", _ordered_dict(key))
        self.calls[("torch", "Size")] = c("torch.Size", _torch_size)
        self.calls[("torch", "device")] = c("torch.device", _torch_device)
        self.calls[("_codecs", "encode")] = c("_codecs.encode", _codecs_encode)
        for m in ("builtins", "__builtin__"):
            self.calls[(m, "set")] = c(f"{m}.set", _make_set(set, key))
            self.calls[(m, "frozenset")] = c(f"{m}.frozenset", _make_set(frozenset, key))
            self.calls[(m, "bytearray")] = c(f"{m}.bytearray", _bytearray)
            self.calls[(m, "bytes")] = c(f"{m}.bytes", _bytes)
            self.calls[(m, "complex")] = c(f"{m}.complex", _complex)

    def close(self):
        """Drops the caches and the allow-listed callables (bound methods: a reference cycle through self), so
        that the storages the result does not use are freed at once, not at the next garbage collection."""
        self.calls = self.tensor_rebuilders = None
        self.arrays, self.refs, self.tensors, self.tensor_ids = {}, {}, {}, set()
        self.source = None

    # -- globals --------------------------------------------------------------------------------------------
    def resolve_global(self, module, name):
        qual = f"{module}.{name}"
        shown = qual if len(qual) <= 200 else qual[:200] + "..."
        call = self.calls.get((module, name))
        if call is not None:
            return call
        if name.endswith("Storage") and module in ("torch", "torch.cuda", "torch.storage"):
            if name in _STORAGE_ELEM and module != "torch.storage":
                return _StorageType(qual, _STORAGE_ELEM[name])
            if name == "UntypedStorage" and module in ("torch", "torch.storage"):
                return _StorageType(qual, "untyped")
            if name in _QUANTIZED_STORAGES:
                raise Refused(f"it holds quantized tensors ({shown}), which are not supported")
        if qual in _TENSOR_CLASSES:
            return _TensorClass(qual)
        if module == "torch" and len(name) <= 40 and _DTYPE_NAME_RE.fullmatch(name):
            return TorchDtype(name)
        raise Refused(f"it references {shown}, which is not a tensor, storage or plain container")

    # -- persistent ids: storages ---------------------------------------------------------------------------
    def persistent_load(self, pid):
        if type(pid) is not tuple or not pid:
            raise Refused(f"its pickle has a persistent id that is a {type(pid).__name__}, not a tuple")
        kind = _ascii(pid[0])
        if kind == "module":
            raise Refused("it is a pickled nn.Module (a whole model, legacy format), whose classes would have to be "
                          "imported; save and load model.state_dict() instead")
        if kind != "storage":
            raise Refused(f"its pickle has a persistent id of unknown kind {brief(pid[0], 40)}")
        if len(pid) != (6 if self.legacy else 5):
            raise Refused(f"its storage persistent id has {len(pid)} fields, not {6 if self.legacy else 5}")
        stype, key, location, numel = pid[1:5]
        if type(stype) is not _StorageType:
            raise Refused(f"its storage persistent id names {brief(stype, 60)} instead of a storage class")
        key = _ascii(key)
        if key is None or not _STORAGE_KEY_RE.fullmatch(key):
            raise Refused(f"its storage persistent id has the key {brief(pid[2], 80)}, which is not a plain "
                          f"record name inside the archive")
        if _ascii(location) is None or len(_ascii(location)) > 64:
            raise Refused(f"storage {key!r} has an invalid location {brief(location, 60)}")
        numel = _check_int(numel, f"the size of storage {key!r}")
        ref = _StorageRef(key, stype.elem, numel)
        if ref.nbytes >= _MAX_INT:
            raise Refused(f"storage {key!r} claims {numel} elements, an absurd size")
        old = self.roots.setdefault(key, ref)
        if (old.elem, old.numel) != (ref.elem, ref.numel):
            raise Refused(f"storage {key!r} is declared both as {old.numel} x {old.elem} and as {ref.numel} x "
                          f"{ref.elem}")
        ref = old
        if self.legacy and pid[5] is not None:
            ref = self._legacy_view(ref, pid[5])
        return self._storage_array(ref) if self.materialize else ref

    def _legacy_view(self, root, view):
        if type(view) is not tuple or len(view) != 3:
            raise Refused(f"storage {root.key!r} has invalid view metadata {brief(view, 60)}")
        vkey = _ascii(view[0])
        if vkey is None or not _STORAGE_KEY_RE.fullmatch(vkey):
            raise Refused(f"storage view key {brief(view[0], 60)} is not a plain name")
        offset = _check_int(view[1], f"the offset of storage view {vkey!r}")
        numel = _check_int(view[2], f"the size of storage view {vkey!r}")
        if offset + numel > root.numel:
            raise Refused(f"storage view {vkey!r} ({numel} elements at {offset}) runs past its storage "
                          f"{root.key!r} of {root.numel} elements")
        old = self.subviews.setdefault(vkey, (root.key, offset, numel))
        if old != (root.key, offset, numel):
            raise Refused(f"storage view {vkey!r} is declared twice differently")
        return _StorageRef(root.key, root.elem, numel, offset, vkey)

    def _storage_array(self, ref):
        cache_key = (ref.key, ref.offset, ref.numel)
        arr = self.arrays.get(cache_key)
        if arr is None:
            whole = self.arrays.get((ref.key, 0, self.roots[ref.key].numel))
            if whole is None:
                raw = self.source.read(ref.key)
                whole = raw if ref.elem == "untyped" else decode_storage(raw, ref.elem, self.big_endian)
                self._remember(whole, self.roots[ref.key])
            arr = whole if ref.view_key is None else whole[ref.offset:ref.offset + ref.numel]
            if arr is not whole:
                self._remember(arr, ref)
        return arr

    def _remember(self, arr, ref):
        self.arrays[(ref.key, ref.offset, ref.numel)] = arr
        self.refs[id(arr)] = ref

    def check_storages(self):
        for ref in self.roots.values():
            self.source.check(ref)

    # -- tensors ----------------------------------------------------------------------------------------------
    def _storage_ref(self, storage, what):
        if not self.materialize:
            if type(storage) is not _StorageRef:
                raise Refused(f"{what} is given a {type(storage).__name__} where a storage belongs")
            return storage
        return self.refs[id(storage)]  # same program as the checked first pass: always a storage array here

    def _tensor(self, what, storage, offset, size, stride, dtype=None, metadata=None):
        ref = self._storage_ref(storage, what)
        offset = _check_int(offset, f"the storage offset of a tensor ({what})")
        shape = _check_dims(size, f"the shape of a tensor ({what})")
        strides = _check_dims(stride, f"the strides of a tensor ({what})")
        if len(shape) != len(strides):
            raise Refused(f"a tensor ({what}) has shape {shape} but {len(strides)} strides")
        if dtype is None:
            elem = "uint8" if ref.elem == "untyped" else ref.elem
        else:
            if type(dtype) is not TorchDtype:
                raise Refused(f"{what} is given {brief(dtype, 40)} where a torch dtype belongs")
            elem = dtype.name
            if ref.elem not in ("untyped", elem):
                raise Refused(f"{what} views a {ref.elem} storage as {elem}")
        if elem not in ITEMSIZE:
            raise Refused(f"it holds a tensor of dtype torch.{elem}, which is not supported "
                          f"(supported: {', '.join(sorted(ITEMSIZE))})")
        neg = conj = False
        if metadata is not None:
            if type(metadata) is not dict or not set(metadata) <= {"conj", "neg"} \
                    or any(type(v) is not bool for v in metadata.values()):
                raise Refused(f"a tensor ({what}) has unsupported metadata {brief(metadata, 80)}")
            neg, conj = metadata.get("neg", False), metadata.get("conj", False)
        itemsize = ITEMSIZE[elem]
        numel = 1
        for n in shape:
            numel *= n
        extent = 0 if numel == 0 else 1 + sum((n - 1) * st for n, st in zip(shape, strides))
        if (offset + extent) * itemsize > ref.nbytes:
            raise Refused(f"a tensor ({what}) with shape {list(shape)}, strides {list(strides)} and offset "
                          f"{offset} reaches element {offset + extent} of {elem}, past the end of storage "
                          f"{ref.key!r} ({ref.nbytes} bytes)")
        if numel * itemsize > max(ref.nbytes, 0) + _OVERLAP_LIMIT:
            raise Refused(f"a tensor ({what}) with shape {list(shape)} describes {numel * itemsize} bytes from a "
                          f"storage of {ref.nbytes} (overlapping strides), beyond the 1 GiB this loader allows")
        if not self.materialize:
            return _TENSOR_PLAN
        desc = (ref.key, ref.offset, ref.numel, elem, offset, shape, strides, neg, conj)
        arr = self.tensors.get(desc)
        if arr is None:
            arr = self._make_view(storage, ref, elem, offset, shape, strides, neg, conj)
            self.tensors[desc] = arr
            self.tensor_ids.add(id(arr))
        return arr

    def _make_view(self, storage, ref, elem, offset, shape, strides, neg, conj):
        if ref.elem != "untyped":  # decoded typed storage: elements of its (native) dtype
            isz = storage.itemsize
            arr = np.ndarray(shape, storage.dtype, buffer=storage, offset=offset * isz,
                             strides=tuple(s * isz for s in strides))
        else:  # raw bytes viewed as `elem`
            dt = LE[elem]
            if self.big_endian:
                dt = dt.newbyteorder(">")
            isz = dt.itemsize
            arr = np.ndarray(shape, dt, buffer=storage, offset=offset * isz, strides=tuple(s * isz for s in strides))
            if elem == "bool":
                arr = arr.view(np.uint8) != 0
            elif elem == "bfloat16":
                arr = bfloat16_bits_to_float32(arr.astype(np.uint16))
            elif not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))
        if neg:
            arr = np.negative(arr)
        if conj:
            arr = np.conj(arr)
        if arr.base is not None and _self_overlapping(arr.shape, arr.strides):
            arr.flags.writeable = False
        return arr

    def rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        self._check_flags(requires_grad, hooks, "_rebuild_tensor_v2")
        return self._tensor("_rebuild_tensor_v2", storage, offset, size, stride, metadata=metadata)

    def rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        self._check_flags(requires_grad, hooks, "_rebuild_tensor_v3")
        return self._tensor("_rebuild_tensor_v3", storage, offset, size, stride, dtype=dtype, metadata=metadata)

    def rebuild_tensor(self, storage, offset, size, stride):
        return self._tensor("_rebuild_tensor", storage, offset, size, stride)

    def _is_tensor(self, x):
        return x is _TENSOR_PLAN if not self.materialize else id(x) in self.tensor_ids

    def rebuild_parameter(self, data, requires_grad, hooks):
        self._check_flags(requires_grad, hooks, "_rebuild_parameter")
        if not self._is_tensor(data):
            raise Refused(f"_rebuild_parameter is given a {type(data).__name__} instead of a tensor")
        return data

    def rebuild_parameter_with_state(self, data, requires_grad, hooks, state):
        return self.rebuild_parameter(data, requires_grad, hooks)  # Python attributes of the parameter: dropped

    def rebuild_from_type_v2(self, func, new_type, args, state):
        if func not in self.tensor_rebuilders:
            raise Refused(f"_rebuild_from_type_v2 is asked to call {brief(func, 60)}, not a tensor rebuild function")
        if type(new_type) is not _TensorClass:
            raise Refused(f"_rebuild_from_type_v2 is asked to make a {brief(new_type, 60)}, not a tensor class")
        if type(args) is not tuple:
            raise Refused("_rebuild_from_type_v2 is given arguments that are not a tuple")
        return func.func(*args)  # tensor attributes in `state` are dropped

    @staticmethod
    def _check_flags(requires_grad, hooks, what):
        if type(requires_grad) is not bool:
            raise Refused(f"{what} is given requires_grad={brief(requires_grad, 40)}, not a bool")
        if hooks is not None and (type(hooks) not in (dict, OrderedDict) or hooks):
            raise Refused(f"{what} is given backward hooks {brief(hooks, 60)}; a checkpoint holds none")

    # -- BUILD: only a state dict's _metadata ---------------------------------------------------------------
    def build(self, inst, state):
        if type(inst) is OrderedDict and type(state) is dict:
            if "_metadata" in state:
                inst._metadata = state["_metadata"]
            return
        raise Refused(f"its pickle sets the state (BUILD) of a {type(inst).__name__}, which a checkpoint does "
                      f"not need")


def _ordered_dict(key):
    def make(*args):
        if not args:
            return OrderedDict()
        if len(args) == 1 and type(args[0]) in (list, tuple) \
                and all(type(p) in (list, tuple) and len(p) == 2 for p in args[0]):
            return OrderedDict((key(k), v) for k, v in args[0])
        raise Refused("collections.OrderedDict is called with arguments other than a list of pairs")
    return make


def _torch_size(*args):
    if len(args) == 1 and type(args[0]) in (tuple, list) and all(type(v) is int for v in args[0]):
        return tuple(args[0])
    if not args:
        return ()
    raise Refused(f"torch.Size is called with {brief(args, 60)}")


def _torch_device(*args):
    if len(args) in (1, 2) and type(args[0]) is str and len(args[0]) <= 64 \
            and (len(args) == 1 or type(args[1]) is int):
        return args[0] if len(args) == 1 else f"{args[0]}:{args[1]}"
    raise Refused(f"torch.device is called with {brief(args, 60)}")


def _codecs_encode(*args):
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise Refused(f"_codecs.encode is called with {brief(args, 60)} (only str, 'latin1' is used for bytes)")


def _make_set(kind, key):
    def make(*args):
        if not args:
            return kind()
        if len(args) == 1 and type(args[0]) in (list, tuple):
            return kind(key(v, "a set element") for v in args[0])
        raise Refused(f"{kind.__name__} is called with {brief(args, 60)}")
    return make


def _bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return bytearray(args[0])
    raise Refused(f"bytearray is called with {brief(args, 60)} (only bytes are accepted)")


def _bytes(*args):
    if not args:
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return bytes(args[0])
    raise Refused(f"bytes is called with {brief(args, 60)} (only bytes are accepted)")


def _complex(*args):
    if 1 <= len(args) <= 2 and all(type(v) in (int, float) for v in args):
        return complex(*args)
    raise Refused(f"complex is called with {brief(args, 60)}")


def _refuse_globals(module, name):
    raise Refused(f"it references {module}.{name}"[:220] + ", which is not a tensor, storage or plain container")


# ---------------------------------------------------------------------------------------------------------------
# entry points

def load_torch_checkpoint(path):
    """Loads a torch.save file without torch; returns its object with tensors as numpy arrays.

    See the module docstring for what is accepted, the allow-list of globals, the checks made before any tensor
    is read, and what the result looks like (notably: bfloat16 tensors are widened to float32 exactly).
    Raises CheckpointError (a ValueError) for every refused file, FileNotFoundError if it does not exist.
    """
    f, size = _open_regular(path)
    with f:
        try:
            if size == 0:
                raise Refused("the file is empty")
            head = f.read(512)
            if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                return _load_zip(f, size)
            if len(head) >= 262 and head[257:262] == b"ustar":
                raise Refused("it is a tar archive: the pre-0.4 torch format, which is not supported; load it with "
                              "an old torch and re-save it with torch.save")
            if head[:1] == b"\x80":
                return _load_legacy(f, size)
            if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
                raise Refused("it looks like a safetensors file, not a torch.save file; use load_safetensors")
            raise Refused(f"it is not a torch checkpoint: neither a zip archive (torch >= 1.6) nor a legacy "
                          f"torch pickle (it starts with bytes {head[:8].hex(' ')})")
        except Refused as e:
            raise CheckpointError(path, str(e)) from None
        except _zip.ZipProblem as e:
            raise CheckpointError(path, str(e)) from None


def _load_zip(f, size):
    members = _zip.read_zip_index(f, size)
    pickles = [n for n in members if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        if any(n.endswith("/constants.pkl") for n in members):
            raise Refused("it is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
        if not pickles:
            raise Refused("it is a zip archive without an <archive>/data.pkl record, so not a torch.save file")
        raise Refused(f"it holds {len(pickles)} data.pkl records ({', '.join(sorted(pickles)[:3])}...)")
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "constants.pkl" in members or any(n.startswith(prefix + "code/") for n in members):
        raise Refused("it is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
    big_endian = False
    order = members.get(prefix + "byteorder")
    if order is not None:
        if order.size > 16:
            raise Refused("its byteorder record is not 'little' or 'big'")
        value = _zip.read_bytes(f, order)
        if value not in (b"little", b"big"):
            raise Refused(f"its byteorder record is {value[:16]!r}, not 'little' or 'big'")
        big_endian = value == b"big"
    if members[prefix + "data.pkl"].size > _MAX_PICKLE_BYTES:
        raise Refused(f"its data.pkl record is {members[prefix + 'data.pkl'].size} bytes, more than the "
                      f"{_MAX_PICKLE_BYTES} a checkpoint's pickle can reasonably need")
    data = _zip.read_bytes(f, members[prefix + "data.pkl"])
    session = _Session(legacy=False, big_endian=big_endian)
    session.source = _ZipSource(f, members, prefix)
    return _run_twice(session, data, 0)


def _machine(session, data, start):
    return SafeUnpickler(data, start=start, resolve_global=session.resolve_global,
                         persistent_load=session.persistent_load, build=session.build)


def _run_twice(session, data, start):
    """First pass: run the pickle with placeholders, collecting and checking every storage and tensor.
    Second pass: run it again, now reading storages (each once, when first used)."""
    try:
        _machine(session, data, start).load()
        session.check_storages()
        session.materialize = True
        value, _ = _machine(session, data, start).load()
        return value
    finally:
        session.close()


def _load_legacy(f, size):
    """The legacy pickles are read from a prefix of the file that grows (x8) until they fit: memory stays near
    the size of the pickles, not of the file."""
    limit = min(size, 1 << 20)
    while True:
        f.seek(0)
        data = f.read(limit)
        try:
            return _load_legacy_from(f, size, data)
        except Truncated:
            if limit >= size:
                raise Refused("the file is truncated: its pickle ends before its STOP opcode") from None
            if limit >= _MAX_PICKLE_BYTES:
                raise Refused(f"its pickles run past {_MAX_PICKLE_BYTES} bytes, more than a checkpoint's pickle "
                              f"can reasonably need") from None
            limit = min(size, limit * 8, _MAX_PICKLE_BYTES)


def _plain_pickle(data, start, what):
    try:
        return SafeUnpickler(data, start=start, resolve_global=_refuse_globals).load()
    except Truncated:
        raise
    except Refused as e:
        raise Refused(f"{what}: {e}") from None


def _load_legacy_from(f, size, data):
    magic, pos = _plain_pickle(data, 0, "it is not a torch checkpoint (no zip archive, and no torch legacy header)")
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise Refused("it is a pickle but not a torch.save file (no torch magic number); plain pickles are not "
                      "loaded")
    protocol, pos = _plain_pickle(data, pos, "its legacy header is corrupt")
    if protocol != _LEGACY_PROTOCOL:
        raise Refused(f"its legacy header has protocol {brief(protocol, 20)}, not {_LEGACY_PROTOCOL}")
    sys_info, pos = _plain_pickle(data, pos, "its legacy header is corrupt")
    if type(sys_info) is not dict:
        raise Refused("its legacy system-info record is not a dict")
    if sys_info.get("little_endian") is not True:
        raise Refused("it was written in the legacy format on a big-endian machine, which is not supported")
    session = _Session(legacy=True)
    try:
        return _load_legacy_main(f, size, data, pos, session)
    finally:
        session.close()


def _load_legacy_main(f, size, data, main, session):
    _, pos = _machine(session, data, main).load()
    keys, pos = _plain_pickle(data, pos, "its storage list is corrupt")
    if type(keys) is not list or not all(type(_ascii(k)) is str for k in keys):
        raise Refused("its storage list is not a list of keys")
    keys = [_ascii(k) for k in keys]
    if len(set(keys)) != len(keys):
        raise Refused("its storage list names a storage twice")
    session.source = _LegacySource(f, size, pos, keys, session.roots)
    session.check_storages()
    session.materialize = True
    value, _ = _machine(session, data, main).load()
    return value


# ---------------------------------------------------------------------------------------------------------------
# writing

def _contiguous_strides(shape):
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


class _Saver:
    def __init__(self, path):
        self.path = path
        self.w = PickleWriter()
        self.records = []    # (key, uint8 view of the storage bytes)
        self.keys = {}       # id(base object) -> key
        self.keep = []       # keeps base objects alive while their ids are used
        self.active = set()  # ids of containers being written (cycle detection)
        self.key_check = KeyCheck()  # the keys load_torch_checkpoint reads back

    def fail(self, where, problem):
        raise CheckpointError(self.path, f"the value at {where or 'the top level'} {problem}", action="save")

    def value(self, v, where, depth=0):
        w = self.w
        if depth > 500:
            self.fail(where, "is nested more than 500 levels deep")
        if v is None:
            w.none()
        elif v is True or v is False:
            w.bool_(v)
        elif type(v) is TorchDtype:
            w.global_("torch", v.name)
        elif isinstance(v, (np.ndarray, BFloat16)):
            self.tensor(v, where)
        elif isinstance(v, np.generic):
            item = v.item() if isinstance(v, (np.bool_, np.integer, np.floating)) else None
            if type(item) in (bool, int, float):
                self.value(item, where, depth)
            else:
                self.fail(where, f"is a numpy scalar of type {type(v).__name__}, which cannot be saved")
        elif isinstance(v, int):
            if not -(2 ** 2000) < v < 2 ** 2000:
                self.fail(where, "is an integer too large to save")
            w.int_(int(v))
        elif isinstance(v, float):
            w.float_(float(v))
        elif isinstance(v, str):
            w.str_(str(v))
        elif isinstance(v, (bytes, bytearray)):
            if isinstance(v, bytearray):
                w.global_("__builtin__", "bytearray")
            w.global_("_codecs", "encode")  # (also for b"": torch's weights-only loader refuses builtins.bytes)
            w.str_(bytes(v).decode("latin-1"))
            w.str_("latin1")
            w.tuple_n(2)
            w.reduce()
            if isinstance(v, bytearray):
                w.tuple_n(1)
                w.reduce()
        elif isinstance(v, (dict, list, tuple)):
            if id(v) in self.active:
                self.fail(where, "contains itself (a reference cycle)")
            self.active.add(id(v))
            if isinstance(v, dict):
                self.mapping(v, where, depth)
            elif isinstance(v, list):
                w.empty_list()
                for start in range(0, len(v), 1000):
                    w.mark()
                    for i, item in enumerate(v[start:start + 1000], start):
                        self.value(item, f"{where}[{i}]", depth + 1)
                    w.appends()
            else:
                self.tuple_(v, where, depth)
            self.active.discard(id(v))
        else:
            self.fail(where, f"has type {type(v).__name__}, which save_torch_checkpoint does not write (it writes "
                             f"dict, list, tuple, str, int, float, bool, None, bytes, numpy arrays and BFloat16)")

    def tuple_(self, v, where, depth):
        w = self.w
        if not v:
            w.empty_tuple()
            return
        if len(v) > 3:
            w.mark()
        for i, item in enumerate(v):
            self.value(item, f"{where}[{i}]", depth + 1)
        if len(v) > 3:
            w.tuple_(len(v))
        else:
            w.tuple_n(len(v))

    def mapping(self, v, where, depth):
        w = self.w
        if isinstance(v, OrderedDict):
            w.global_("collections", "OrderedDict")
            w.empty_tuple()
            w.reduce()
        else:
            w.empty_dict()
        items = list(v.items())
        for start in range(0, len(items), 1000):
            w.mark()
            for k, item in items[start:start + 1000]:
                try:
                    self.key_check(k.item() if isinstance(k, np.generic) else k)
                except Refused:
                    self.fail(where, f"has the key {brief(k, 40)} of type {type(k).__name__}; keys must be strings, "
                                     f"numbers (ints of at most 60 bits) or up to {KeyCheck.MAX_TUPLES} tuples of up "
                                     f"to {KeyCheck.MAX_TUPLE_ITEMS} of these, which load_torch_checkpoint reads back")
                self.value(k, where, depth + 1)
                self.value(item, f"{where}[{k!r}]", depth + 1)
            w.setitems()

    def _key(self, base, raw):
        key = self.keys.get(id(base))
        if key is None:
            key = str(len(self.keys))
            self.keys[id(base)] = key
            self.keep.append(base)
            self.records.append((key, raw))
        return key

    def _storage(self, a, elem, where):
        """(key, numel of storage, offset, strides) in elements, sharing the base buffer where possible."""
        itemsize = a.dtype.itemsize
        little = a.dtype == a.dtype.newbyteorder("<")
        if a.size > 0 and little:
            root = a
            while isinstance(root.base, np.ndarray):
                root = root.base
            if root.dtype == a.dtype and root.flags.c_contiguous and root.size > 0 \
                    and all(s >= 0 and s % itemsize == 0 for s in a.strides):
                delta = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
                reach = delta + sum((n - 1) * s for n, s in zip(a.shape, a.strides)) + itemsize
                if delta >= 0 and delta % itemsize == 0 and reach <= root.nbytes:
                    raw = root.reshape(-1).view(np.uint8)
                    return (self._key(root, raw), root.size, delta // itemsize,
                            tuple(s // itemsize for s in a.strides))
        c = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        return self._key(a, c.reshape(-1).view(np.uint8)), a.size, 0, _contiguous_strides(a.shape)

    def tensor(self, a, where):
        w = self.w
        if isinstance(a, BFloat16):
            elem = "bfloat16"
            bits = np.ascontiguousarray(a.bits, dtype="<u2")
            key = self._key(a, bits.reshape(-1).view(np.uint8))
            numel, offset, strides, shape = bits.size, 0, _contiguous_strides(bits.shape), bits.shape
        else:
            elem = dtype_name(a.dtype)
            if elem is None:
                self.fail(where, f"is an array of dtype {a.dtype}, which torch cannot hold")
            key, numel, offset, strides = self._storage(a, elem, where)
            shape = a.shape
        v3 = elem not in _SAVE_STORAGE
        w.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        w.mark()
        w.mark()  # the persistent id
        w.str_("storage")
        if v3:
            w.global_("torch.storage", "UntypedStorage")
        else:
            w.global_("torch", _SAVE_STORAGE[elem])
        w.str_(key)
        w.str_("cpu")
        w.int_(numel * ITEMSIZE[elem] if v3 else numel)
        w.tuple_(5)
        w.binpersid()
        w.int_(offset)
        self.tuple_(tuple(int(n) for n in shape), where, 0)
        self.tuple_(tuple(int(s) for s in strides), where, 0)
        w.bool_(False)
        w.global_("collections", "OrderedDict")
        w.empty_tuple()
        w.reduce()
        if v3:
            w.global_("torch", elem)
        w.tuple_(7 if v3 else 6)
        w.reduce()


def _archive_name(path):
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip(".")
    return stem or "archive"


def save_torch_checkpoint(path, obj):
    """Writes `obj` to `path` (atomically) as torch.save would, readable by torch.load(weights_only=True).

    See the module docstring for the accepted values and how shared arrays become shared storages. Raises
    CheckpointError (before creating any file) for a value it cannot write, naming where in `obj` it is.
    """
    saver = _Saver(path)
    saver.value(obj, "")
    pickle_bytes = saver.w.stop()
    digest = hashlib.sha256(pickle_bytes)
    for key, raw in saver.records:
        digest.update(key.encode())
        digest.update(str(raw.size).encode())
    serialization_id = str(int.from_bytes(digest.digest()[:16], "big")).rjust(40, "0")[-40:]
    arch = _archive_name(path)
    with atomic_write(path) as f:
        zw = _zip.ZipWriter(f)
        zw.write_record(f"{arch}/data.pkl", pickle_bytes)
        zw.write_record(f"{arch}/.format_version", b"1")
        zw.write_record(f"{arch}/.storage_alignment", b"64")
        zw.write_record(f"{arch}/byteorder", b"little")
        for key, raw in saver.records:
            zw.write_record(f"{arch}/data/{key}", raw)
        zw.write_record(f"{arch}/version", b"3\n")
        zw.write_record(f"{arch}/.data/serialization_id", serialization_id.encode())
        zw.close()
