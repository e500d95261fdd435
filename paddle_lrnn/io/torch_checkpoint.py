"""``torch.save`` checkpoints without torch, and without running anything from the file.

Why our own reader: the library loaders run code named by a crafted checkpoint. PaddleNLP 3.0.0b4's
``paddlenlp.utils.serialization.load_torch`` unpickles with a ``find_class`` that falls back to pickle's own (any
importable name), so the ``os.system reduce`` pickle of tests/hostile.py runs its command, as measured when the
need for this reader was reported; PaddleFormers 1.2.0's ``load_torch`` did the same. (That loader also lacks
bfloat16 storages.) ``torch.load(weights_only=True)`` refuses such a pickle but needs torch, which converting a
checkpoint must not.

Reading (`load_torch_checkpoint`) takes the zip format torch.save has written since torch 1.6 (RWKV-v2/RWKV-4
``.pth`` state dicts, mru-lm's training checkpoint dict, Hugging Face ``pytorch_model.bin``); the older formats
(the pre-1.6 pickle chain, TorchScript archives) are refused with a message saying so. The pickle runs in the
standard library's Python unpickler with its dangerous parts replaced:

* a global is looked up in an allow-list only (`_Unpickler.allowed`), never imported: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor``
  / ``_rebuild_parameter`` / ``_rebuild_parameter_with_state``, ``torch._tensor._rebuild_from_type_v2`` (tensors),
  the storage classes ``torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage`` (also
  ``torch.cuda.*``: data always lands in host memory), ``collections.OrderedDict``, ``torch.Size`` (-> tuple),
  ``torch.device`` and torch dtypes (-> str), ``_codecs.encode`` (bytes in protocol 2). Each maps to a function here
  that checks its arguments. Anything else is refused by name: "it references os.system, which is not a tensor,
  storage or plain container".
* REDUCE calls only those functions; BUILD only sets a state dict's ``_metadata``; APPEND only appends to lists;
  the opcodes that make arbitrary objects (INST of a class, OBJ, NEWOBJ, EXT*, sets, out-of-band buffers, text
  persistent ids) are refused; dict keys must be strings, bools, floats or ints below 2**60 (a tuple key could be
  nested so deep that hashing it crashes the interpreter, and wide ints can be made to share one hash).

Before a tensor is made, its storage record is checked (zip member stored, not compressed, inside the file, not
overlapping another, exactly ``numel * itemsize`` bytes, CRC-32 correct) and so are its offset, shape and strides
(inside the storage; an expanded view may not describe more than 1 GiB beyond it). Tensors come back as numpy
arrays that **memory-map** their storage (copy-on-write: writing to them never changes the file), so a checkpoint
is read lazily, tensor by tensor (the CRC-32 check streams each storage once through the page cache, keeping none
of it). Views of one storage share memory; the same view twice (tied weights) is one
array object. bfloat16 tensors come back as uint16 arrays of their bits (Paddle's convention: ``paddle.to_tensor``
makes them bfloat16 again). ``requires_grad``, hooks and tensor attributes are dropped.

Writing (`save_torch_checkpoint`): dicts (OrderedDict kept), lists, tuples, str, bytes, int, float, bool, None, numpy
arrays (uint16 = bfloat16), in torch's zip layout (records stored and aligned to 64 bytes), readable by
``torch.load(weights_only=True)``; the same array object twice becomes one storage (tied weights). Atomic.
"""
import codecs
import io
import os
import pickle
import re
import struct
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from ._dtypes import numpy_dtype, paddle_name
from ._files import open_regular
from .atomic import atomic_write
from .errors import CheckpointError

__all__ = ["load_torch_checkpoint", "save_torch_checkpoint"]

_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_STORAGE_CLASS = {elem: name for name, elem in _STORAGES.items()}
_MAX_INT = 1 << 62
_MAX_KEY_INT = 1 << 60  # below 2**61 - 1, the modulus of int hashes: distinct key ints keep distinct hashes
_MAX_DIMS = 64
_OVERLAP_LIMIT = 1 << 30
_MAX_PICKLE_BYTES = 1 << 30
_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_REFUSED_OPCODES = {pickle.OBJ: "OBJ", pickle.NEWOBJ: "NEWOBJ", pickle.NEWOBJ_EX: "NEWOBJ_EX", pickle.EXT1: "EXT1",
                    pickle.EXT2: "EXT2", pickle.EXT4: "EXT4", pickle.PERSID: "PERSID", pickle.EMPTY_SET: "EMPTY_SET",
                    pickle.ADDITEMS: "ADDITEMS", pickle.FROZENSET: "FROZENSET", pickle.BYTEARRAY8: "BYTEARRAY8",
                    pickle.NEXT_BUFFER: "NEXT_BUFFER", pickle.READONLY_BUFFER: "READONLY_BUFFER"}


class Refused(Exception):
    """Raised while reading; load_torch_checkpoint turns it into a CheckpointError naming the file."""


def brief(value, limit=60, inner=False):
    """A short description of an untrusted value for a message (one level into short tuples, never deeper)."""
    if type(value) in (str, bytes):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if type(value) in (int, float, bool) or value is None:
        return repr(value)[:limit]
    if type(value) in (tuple, list) and len(value) <= 4 and not inner:
        return "(" + ", ".join(brief(v, 20, True) for v in value) + ")"
    return type(value).__name__


def _int(v, what):
    if type(v) is not int or not 0 <= v < _MAX_INT:
        raise Refused(f"{what} is {brief(v, 40)} ({type(v).__name__}), not a non-negative integer")
    return v


def _dims(v, what):
    if type(v) not in (tuple, list) or len(v) > _MAX_DIMS:
        raise Refused(f"{what} is a {type(v).__name__} {brief(v)}, not a tuple of at most {_MAX_DIMS} ints")
    return tuple(_int(x, what) for x in v)


def _key(k):
    if type(k) in (str, bool, float) or k is None or (type(k) is int and -_MAX_KEY_INT < k < _MAX_KEY_INT):
        return k
    raise Refused(f"its pickle uses a {type(k).__name__} {brief(k, 40)} as a dict key; a checkpoint's keys are "
                  f"strings or numbers")


class _Call:
    """An allow-listed function: the only thing REDUCE may call."""

    def __init__(self, qualname, func):
        self.qualname, self.func = qualname, func


class _StorageType:
    def __init__(self, qualname, elem):
        self.qualname, self.elem = qualname, elem


class _Storage:
    def __init__(self, key, elem, numel, array):
        self.key, self.elem, self.numel, self.array = key, elem, numel, array


def _refuse_opcode(name):
    def refuse(self):
        raise Refused(f"its pickle uses the {name} opcode, which builds objects a torch checkpoint does not need")
    return refuse


def _unknown_opcode(code):
    def refuse(self):
        raise Refused(f"its pickle has an unknown opcode 0x{code:02x}")
    return refuse


class _Unpickler(pickle._Unpickler):  # the Python implementation: its opcodes can be replaced one by one
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data, archive):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.archive = archive
        self.storages = {}   # key -> _Storage
        self.views = {}      # (key, offset, shape, strides) -> array: the same view is the same array
        self.tensors = set()
        rebuild = {n: _Call(f"torch._utils.{n}", getattr(self, n)) for n in
                   ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter", "_rebuild_parameter_with_state")}
        self.rebuilders = set(rebuild.values())
        from_type = _Call("torch._tensor._rebuild_from_type_v2", self._rebuild_from_type_v2)
        self.allowed = {("torch._utils", n): c for n, c in rebuild.items()}
        self.allowed.update({("torch._tensor", "_rebuild_from_type_v2"): from_type,
                             ("torch.tensor", "_rebuild_from_type_v2"): from_type,
                             ("collections", "OrderedDict"): _Call("collections.OrderedDict", _ordered_dict),
                             ("torch", "Size"): _Call("torch.Size", _torch_size),
                             ("torch", "device"): _Call("torch.device", _torch_device),
                             ("_codecs", "encode"): _Call("_codecs.encode", _codecs_encode)})
        for module in ("torch", "torch.cuda"):
            self.allowed.update({(module, n): _StorageType(f"{module}.{n}", e) for n, e in _STORAGES.items()})
        for name in ("torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"):
            self.allowed[tuple(name.rsplit(".", 1))] = name

    def find_class(self, module, name):
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        if module == "torch" and re.fullmatch(r"(b?float|u?int|complex)\d{1,3}|bool|half|double|long", name):
            return f"torch.{name}"
        raise Refused(f"it references {module}.{name}"[:220] + ", which is not a tensor, storage or plain container")

    def persistent_load(self, pid):
        if type(pid) is not tuple or not pid:
            raise Refused(f"its pickle has a persistent id that is a {type(pid).__name__}, not a tuple")
        if pid[0] == "module":
            raise Refused("it is a pickled nn.Module (a whole model), whose classes would have to be imported; save "
                          "and load model.state_dict() instead")
        if pid[0] != "storage":
            raise Refused(f"its pickle has a persistent id of unknown kind {brief(pid[0], 40)}")
        if len(pid) != 5:
            raise Refused(f"its storage persistent id has {len(pid)} fields, not 5")
        stype, key, location, numel = pid[1:]
        if type(stype) is not _StorageType:
            raise Refused(f"its storage persistent id names {brief(stype)} instead of a storage class")
        if type(key) is not str or not _KEY_RE.fullmatch(key):
            raise Refused(f"its storage persistent id has the key {brief(key, 80)}, which is not a plain record "
                          f"name inside the archive")
        if type(location) is not str or len(location) > 64:
            raise Refused(f"storage {key!r} has an invalid location {brief(location)}")
        numel = _int(numel, f"the size of storage {key!r}")
        old = self.storages.get(key)
        if old is not None:
            if (old.elem, old.numel) != (stype.elem, numel):
                raise Refused(f"storage {key!r} is declared both as {old.numel} x {old.elem} and as {numel} x "
                              f"{stype.elem}")
            return old
        dtype = numpy_dtype(stype.elem)
        storage = _Storage(key, stype.elem, numel, self.archive.storage(key, dtype, numel))
        self.storages[key] = storage
        return storage

    # -- the allow-listed tensor functions --------------------------------------------------------------------
    def _tensor(self, what, storage, offset, size, stride, metadata=None):
        if type(storage) is not _Storage:
            raise Refused(f"{what} is given a {type(storage).__name__} where a storage belongs")
        offset = _int(offset, f"the storage offset of a tensor ({what})")
        shape = _dims(size, f"the shape of a tensor ({what})")
        strides = _dims(stride, f"the strides of a tensor ({what})")
        if len(shape) != len(strides):
            raise Refused(f"a tensor ({what}) has shape {shape} but {len(strides)} strides")
        if metadata:
            raise Refused(f"a tensor ({what}) has unsupported metadata {brief(metadata, 80)}")
        itemsize = storage.array.itemsize
        numel = int(np.prod(shape, dtype=object))
        extent = 0 if numel == 0 else 1 + sum((n - 1) * s for n, s in zip(shape, strides))
        if offset + extent > storage.numel:
            raise Refused(f"a tensor ({what}) with shape {list(shape)}, strides {list(strides)} and offset {offset} "
                          f"reaches element {offset + extent} of {storage.elem}, past the end of storage "
                          f"{storage.key!r} ({storage.numel * itemsize} bytes)")
        if numel * itemsize > storage.numel * itemsize + _OVERLAP_LIMIT:
            raise Refused(f"a tensor ({what}) with shape {list(shape)} describes {numel * itemsize} bytes from a "
                          f"storage of {storage.numel * itemsize} (overlapping strides), beyond the 1 GiB this "
                          f"loader allows")
        view = (storage.key, offset, shape, strides)
        if view not in self.views:
            arr = np.ndarray(shape, storage.array.dtype, buffer=storage.array, offset=offset * itemsize,
                             strides=tuple(s * itemsize for s in strides)) if numel else \
                np.zeros(shape, storage.array.dtype)
            self.views[view] = arr
            self.tensors.add(id(arr))
        return self.views[view]

    @staticmethod
    def _flags(requires_grad, hooks, what):
        if type(requires_grad) is not bool:
            raise Refused(f"{what} is given requires_grad={brief(requires_grad, 40)}, not a bool")
        if hooks is not None and (type(hooks) not in (dict, OrderedDict) or hooks):
            raise Refused(f"{what} is given backward hooks {brief(hooks)}; a checkpoint holds none")

    def _rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        self._flags(requires_grad, hooks, "_rebuild_tensor_v2")
        return self._tensor("_rebuild_tensor_v2", storage, offset, size, stride, metadata)

    def _rebuild_tensor(self, storage, offset, size, stride):
        return self._tensor("_rebuild_tensor", storage, offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad, hooks, state=None):
        self._flags(requires_grad, hooks, "_rebuild_parameter")
        if id(data) not in self.tensors:
            raise Refused(f"_rebuild_parameter is given a {type(data).__name__} instead of a tensor")
        return data  # attributes in `state` are dropped

    _rebuild_parameter_with_state = _rebuild_parameter

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        if func not in self.rebuilders:
            raise Refused(f"_rebuild_from_type_v2 is asked to call {brief(func)}, not a tensor rebuild function")
        if type(new_type) is not str or type(args) is not tuple:
            raise Refused(f"_rebuild_from_type_v2 is asked to make a {brief(new_type)}, not a tensor class")
        return func.func(*args)

    # -- the opcodes replaced -------------------------------------------------------------------------------
    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if type(func) is not _Call:
            raise Refused(f"its pickle calls a {type(func).__name__} value")
        if type(args) is not tuple:
            raise Refused(f"its pickle calls {func.qualname} with a {type(args).__name__} of arguments")
        self.stack[-1] = func.func(*args)

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not OrderedDict or type(state) is not dict:
            raise Refused(f"its pickle sets the state (BUILD) of a {type(inst).__name__}, which a checkpoint does "
                          f"not need")
        if "_metadata" in state:
            inst._metadata = state["_metadata"]

    def _list_target(self, op):
        target = self.stack[-1]
        if type(target) is not list:
            raise Refused(f"its pickle uses {op} to a {type(target).__name__}")
        return target

    def load_append(self):
        value = self.stack.pop()
        self._list_target("APPEND").append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._list_target("APPENDS").extend(items)

    def _dict_target(self, op):
        target = self.stack[-1]
        if type(target) not in (dict, OrderedDict):
            raise Refused(f"its pickle uses {op} on a {type(target).__name__}")
        return target

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._dict_target("SETITEM")[_key(key)] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._dict_target("SETITEMS")
        for i in range(0, len(items) - 1, 2):
            target[_key(items[i])] = items[i + 1]

    def load_dict(self):
        items = self.pop_mark()
        self.append({_key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})

    def _long(self, n):
        if not 0 <= n <= 1024:
            raise Refused(f"its pickle holds a {n}-byte integer, too large for a checkpoint")
        data = self.read(n)
        if len(data) != n:
            raise Refused("its pickle is truncated inside an integer")
        self.append(int.from_bytes(data, "little", signed=True))

    def load_long1(self):
        self._long(self.read(1)[0])

    def load_long4(self):
        self._long(struct.unpack("<i", self.read(4))[0])

    def load_put(self):
        i = int(self.readline()[:-1])
        if not 0 <= i < 1 << 32:
            raise Refused(f"its pickle has a negative memo index or one out of range ({brief(i)})")
        self.memo[i] = self.stack[-1]

    for _code, _name in _REFUSED_OPCODES.items():
        dispatch[_code[0]] = _refuse_opcode(_name)
    dispatch.update({pickle.REDUCE[0]: load_reduce, pickle.BUILD[0]: load_build, pickle.APPEND[0]: load_append,
                     pickle.APPENDS[0]: load_appends, pickle.SETITEM[0]: load_setitem,
                     pickle.SETITEMS[0]: load_setitems, pickle.DICT[0]: load_dict, pickle.LONG1[0]: load_long1,
                     pickle.LONG4[0]: load_long4, pickle.PUT[0]: load_put})
    for _code in range(256):
        dispatch.setdefault(_code, _unknown_opcode(_code))
    del _code, _name


def _ordered_dict(*args):
    if not args:
        return OrderedDict()
    if len(args) == 1 and type(args[0]) in (list, tuple) \
            and all(type(p) in (list, tuple) and len(p) == 2 for p in args[0]):
        return OrderedDict((_key(k), v) for k, v in args[0])
    raise Refused("collections.OrderedDict is called with arguments other than a list of pairs")


def _torch_size(*args):
    if len(args) == 1 and type(args[0]) in (tuple, list) and all(type(v) is int for v in args[0]):
        return tuple(args[0])
    raise Refused(f"torch.Size is called with {brief(args)}")


def _torch_device(*args):
    if len(args) in (1, 2) and type(args[0]) is str and len(args[0]) <= 64 and (len(args) == 1 or type(args[1]) is int):
        return args[0] if len(args) == 1 else f"{args[0]}:{args[1]}"
    raise Refused(f"torch.device is called with {brief(args)}")


def _codecs_encode(*args):
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise Refused(f"_codecs.encode is called with {brief(args)} (only str, 'latin1' is used for bytes)")


# ---------------------------------------------------------------------------------------------------------------
# the zip archive

class _Archive:
    """The validated members of a torch zip archive; storages memory-mapped from it."""

    def __init__(self, path, f, size):
        self.path = path
        try:
            infos = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error, EOFError, IndexError,
                UnicodeDecodeError, OSError, NotImplementedError) as e:
            raise Refused(f"it is not a readable zip archive (truncated or corrupt?): {e}") from None
        self.members = {}
        end = 0
        for info in sorted(infos, key=lambda i: i.header_offset):
            name = info.orig_filename
            if name in self.members:
                raise Refused(f"its zip archive holds the member {name!r} twice")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
                raise Refused(f"zip member {name!r} is compressed or encrypted (method {info.compress_type}, "
                              f"declaring {info.file_size} bytes); torch.save stores every record uncompressed")
            f.seek(max(info.header_offset, 0))
            head = f.read(30)
            if len(head) != 30 or head[:4] != b"PK\x03\x04" or info.header_offset < end:
                raise Refused(f"zip member {name!r} has no local header where the directory points, or overlaps "
                              f"the member before it")
            start = info.header_offset + 30 + sum(struct.unpack("<HH", head[26:30]))
            end = start + info.file_size
            if info.compress_size != info.file_size or end > size:
                raise Refused(f"zip member {name!r} declares {info.file_size} bytes at offset {start}, past the end "
                              f"of the file ({size} bytes)")
            self.members[name] = (start, info.file_size, info.CRC)
        pickles = [n for n in self.members if n.endswith("/data.pkl") and n.count("/") == 1]
        if any(n.endswith(("/constants.pkl", "/code/")) or "/code/" in n for n in self.members):
            raise Refused("it is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
        if len(pickles) != 1:
            raise Refused("it is a zip archive without an <archive>/data.pkl record, so not a torch.save file"
                          if not pickles else f"it holds {len(pickles)} data.pkl records")
        self.prefix = pickles[0][:-len("data.pkl")]
        order = self.members.get(self.prefix + "byteorder")
        if order is not None and self.read(self.prefix + "byteorder", 16) != b"little":
            raise Refused("its byteorder record is not 'little' (big-endian checkpoints are not supported)")

    def read(self, name, limit):
        start, n, crc = self.members[name]
        if n > limit:
            raise Refused(f"its {name} record is {n} bytes, more than the {limit} it can reasonably need")
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(n)
        if zlib.crc32(data) != crc:
            raise Refused(f"zip member {name!r} fails its CRC-32 check (corrupt file)")
        return data

    def storage(self, key, dtype, numel):
        """Storage `key` as a copy-on-write memory map of `numel` elements, after checking its size and CRC-32."""
        name = f"{self.prefix}data/{key}"
        if name not in self.members:
            raise Refused(f"storage {key!r} has no record data/{key} in the archive")
        start, n, crc = self.members[name]
        if n != numel * dtype.itemsize:
            raise Refused(f"storage {key!r} is declared as {numel} x {paddle_name(dtype)} ({numel * dtype.itemsize} "
                          f"bytes) but its record holds {n} bytes")
        with open(self.path, "rb") as f:  # the CRC in chunks: the file passes through the page cache, not memory
            f.seek(start)
            value, left = 0, n
            while left:
                chunk = f.read(min(left, 1 << 24))
                value, left = zlib.crc32(chunk, value), left - len(chunk)
        if value != crc:
            raise Refused(f"zip member {name!r} fails its CRC-32 check (corrupt file)")
        if n == 0:
            return np.zeros(0, dtype)
        return np.memmap(self.path, dtype, mode="c", offset=start, shape=(numel,)).view(np.ndarray)


def load_torch_checkpoint(path):
    """Loads a torch.save file (zip format) without torch; returns its object with tensors as memory-mapped numpy
    arrays (see the module docstring). CheckpointError for every refused file, FileNotFoundError if missing."""
    f, size = open_regular(path)
    with f:
        try:
            head = f.read(512)
            if size == 0:
                raise Refused("the file is empty")
            if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
                if len(head) >= 262 and head[257:262] == b"ustar":
                    raise Refused("it is a tar archive: the pre-0.4 torch format, which is not supported; re-save "
                                  "it with a recent torch")
                if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
                    raise Refused("it looks like a safetensors file, not a torch.save file; use load_safetensors")
                raise Refused("it is not a torch checkpoint: not the zip archive torch >= 1.6 writes (re-save an "
                              "older file with a recent torch)")
            archive = _Archive(os.fspath(path), f, size)
            unpickler = _Unpickler(archive.read(archive.prefix + "data.pkl", _MAX_PICKLE_BYTES), archive)
            try:
                return unpickler.load()
            except Refused:
                raise
            except Exception as e:  # whatever a corrupt pickle makes the unpickler raise: nothing of it ran
                raise Refused(f"its pickle is malformed: {type(e).__name__}: {str(e)[:200]}") from None
        except Refused as e:
            raise CheckpointError(path, str(e)) from None


# ---------------------------------------------------------------------------------------------------------------
# writing

def _global(module, name):
    """A stand-in pickled as the global module.name (the name is never imported here or when writing)."""
    return type(name, (), {"__module__": module, "__qualname__": name, "_torch_global": True})


_REBUILD = _global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_GLOBALS = {elem: _global("torch", name) for elem, name in _STORAGE_CLASS.items()}


class _Pickler(pickle._Pickler):  # the Python implementation: it lets save_global write a name it cannot import
    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.records = {}  # id(array) -> (key, little-endian contiguous array)

    def save_global(self, obj, name=None):
        if getattr(obj, "_torch_global", False):
            self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    def save_bytes(self, obj):  # always as _codecs.encode (the stdlib writes b"" as builtins.bytes(), which torch refuses)
        self.save_reduce(codecs.encode, (obj.decode("latin-1"), "latin1"), obj=obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes

    def persistent_id(self, obj):
        if type(obj) is tuple and len(obj) == 2 and obj[0] is _REBUILD:  # (marker, array): the array's storage
            key, arr = self.records[id(obj[1])]
            return ("storage", _STORAGE_GLOBALS[paddle_name(arr.dtype)], key, "cpu", arr.size)
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        if id(obj) not in self.records:
            self.records[id(obj)] = (str(len(self.records)), np.ascontiguousarray(obj, obj.dtype.newbyteorder("<")))
        strides = tuple(int(np.prod(obj.shape[i + 1:])) for i in range(obj.ndim))
        return _REBUILD, ((_REBUILD, obj), 0, tuple(obj.shape), strides, False, OrderedDict())


def _plain(obj, path, where="", active=()):
    """`obj` checked for what save_torch_checkpoint writes; numpy scalars become Python scalars."""
    def fail(problem):
        raise CheckpointError(path, f"the value at {where or 'the top level'} {problem}", action="save")

    if isinstance(obj, np.ndarray):
        if paddle_name(obj.dtype) not in _STORAGE_CLASS:
            fail(f"is an array of dtype {obj.dtype}, which torch cannot hold")
        return obj
    if isinstance(obj, np.generic) and type(obj.item()) in (bool, int, float):
        return obj.item()
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return obj
    if type(obj) not in (dict, OrderedDict, list, tuple):
        fail(f"has type {type(obj).__name__}, which save_torch_checkpoint does not write (it writes dict, list, "
             f"tuple, str, bytes, int, float, bool, None and numpy arrays)")
    if id(obj) in active:
        fail("contains itself (a reference cycle)")
    active = (*active, id(obj))
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, path, f"{where}[{i}]", active) for i, v in enumerate(obj))
    for k in obj:
        if type(k) not in (str, int, float, bool) and k is not None:
            fail(f"has the key {brief(k, 40)} of type {type(k).__name__}; keys must be strings or numbers")
    return type(obj)((k, _plain(v, path, f"{where}[{k!r}]", active)) for k, v in obj.items())


def save_torch_checkpoint(path, obj):
    """Writes `obj` to `path` (atomically) as torch.save would, readable by torch.load(weights_only=True).

    CheckpointError (before creating any file) for a value it cannot write, naming where in `obj` it is."""
    buf = io.BytesIO()
    pickler = _Pickler(buf)
    pickler.dump(_plain(obj, path))
    arch = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(os.fspath(path)))[0]).strip(".") \
        or "archive"
    records = [("data.pkl", buf.getvalue()), ("byteorder", b"little")]
    records += [(f"data/{key}", arr) for key, arr in pickler.records.values()]
    records.append(("version", b"3\n"))
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            data = memoryview(data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else data)
            info = zipfile.ZipInfo(f"{arch}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.file_size = len(data)
            zip64 = len(data) * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule: it adds a 20-byte field then
            pad = -(f.tell() + 30 + len(info.filename.encode()) + 20 * zip64 + 4) % 64  # data aligned as torch's
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            with z.open(info, "w", force_zip64=zip64) as w:
                for start in range(0, len(data), 1 << 24):
                    w.write(data[start:start + (1 << 24)])
