"""Hand-crafted checkpoint files for the tests that hostile or broken files are refused: zip archives around a given
pickle, tensor records written opcode by opcode, pickles that would run code, raw safetensors headers."""
import builtins
import json
import os
import pickle
import struct
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np


class PickleWriter:
    """Writes protocol-2 pickle opcodes one at a time, to craft what no pickler would write."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")

    def global_(self, module, name):
        self.out += f"c{module}\n{name}\n".encode()

    def str_(self, value):
        raw = value.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def int_(self, value):
        if -2 ** 31 <= value < 2 ** 31:
            self.out += b"J" + struct.pack("<i", value)
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def bool_(self, value):
        self.out += b"\x88" if value else b"\x89"

    def tuple_(self, n=0):  # TUPLE: the items since the last mark
        self.out += b"t"

    def __getattr__(self, name):  # the opcodes without an argument
        code = {"mark": b"(", "none": b"N", "empty_tuple": b")", "empty_list": b"]", "empty_dict": b"}",
                "reduce": b"R", "binpersid": b"Q", "setitems": b"u", "appends": b"e"}[name]
        return lambda: self.out.extend(code)

    def stop(self):
        return bytes(self.out + b".")


def craft_zip(path, pkl, storages=(), prefix="archive", byteorder=b"little", extra=()):
    """A torch-style zip archive (stored records) around a given data.pkl and storage records."""
    records = [(f"{prefix}/data.pkl", pkl)] + ([(f"{prefix}/byteorder", byteorder)] if byteorder is not None else [])
    records += [(f"{prefix}/data/{key}", data) for key, data in storages] + list(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a duplicate name, on purpose)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for name, data in records + [(f"{prefix}/version", b"3\n")]:
                z.writestr(name, data)
    return path


def tensor_ops(w, key="0", storage="FloatStorage", numel=4, offset=0, size=(4,), stride=(1,), fn="_rebuild_tensor_v2",
               location="cpu", requires_grad=False, extra_args=()):
    """Writes one _rebuild_tensor_v2(...) call with PickleWriter."""
    w.global_("torch._utils", fn)
    w.mark()
    w.mark()
    w.str_("storage")
    w.global_("torch", storage)
    w.str_(key) if isinstance(key, str) else w.int_(key)
    w.str_(location)
    w.int_(numel)
    w.tuple_(5)
    w.binpersid()
    w.int_(offset)
    w.mark()
    for n in size:
        w.str_(n) if isinstance(n, str) else w.int_(n)
    w.tuple_(0)
    w.mark()
    for s in stride:
        w.int_(s)
    w.tuple_(0)
    w.none() if requires_grad is None else w.bool_(requires_grad)
    w.global_("collections", "OrderedDict")
    w.empty_tuple()
    w.reduce()
    for fn_extra in extra_args:
        fn_extra(w)
    w.tuple_(0)
    w.reduce()


def dict_pickle(entries):
    """{name: callable(writer) that writes the value} -> data.pkl bytes."""
    w = PickleWriter()
    w.empty_dict()
    w.mark()
    for name, write in entries.items():
        w.str_(name)
        write(w)
    w.setitems()
    return w.stop()


def one_tensor_file(path, values=np.arange(4, dtype=np.float32), **kw):
    kw.setdefault("numel", values.size)
    pkl = dict_pickle({"w": lambda w: tensor_ops(w, **kw)})
    return craft_zip(path, pkl, [("0", values.tobytes())])


class Reduce:
    """Pickles as a call of func(*args): what a hostile checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_pickles(marker):
    """{name: (data.pkl bytes, fragments the refusal names)}: pickles that would run code (each would create the file
    `marker`) or abuse the pickle machine."""
    m = str(marker)
    touch = f"touch {m}"
    code = f"open({m!r}, 'w').write('pwned')"
    return {
        "os.system raw": (b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(touch)) + touch.encode() + b"\x85R.",
                          ["os.system", "not a tensor, storage or plain container"]),
        "os.system reduce": (pickle.dumps({"w": Reduce(os.system, (touch,))}, protocol=2), ["system"]),
        "builtins.eval": (pickle.dumps(Reduce(builtins.eval, (code,)), protocol=2), ["eval"]),
        "builtins.exec": (pickle.dumps([1, Reduce(builtins.exec, (code,))], protocol=2), ["exec"]),
        "subprocess.Popen": (pickle.dumps(Reduce(subprocess.Popen, (["touch", m],)), protocol=2),
                             ["Popen"]),  # protocol 2 spells it with its Python 2 module name
        "subprocess.Popen raw": (b"\x80\x02csubprocess\nPopen\n]X\x05\x00\x00\x00touchaX"
                                 + struct.pack("<I", len(m)) + m.encode() + b"a\x85R.", ["subprocess.Popen"]),
        "protocol 4 os.system": (pickle.dumps(Reduce(os.system, (touch,)), protocol=4), ["system"]),
        "protocol 0 os.system": (pickle.dumps(Reduce(os.system, (touch,)), protocol=0), ["system"]),
        "getattr chain": (b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\nX\x02\x00\x00\x00os\x85R"
                          b"X\x06\x00\x00\x00system\x86R.", ["builtins.getattr"]),
        "stack_global getattr": (b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93.", ["builtins.getattr"]),
        "dunder on allowed name": (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2.__globals__\n.",
                                   ["torch._utils._rebuild_tensor_v2.__globals__"]),
        "module path on allowed module": (b"\x80\x02ctorch._utils.os\nsystem\n.", ["torch._utils.os.system"]),
        "OrderedDict attribute": (b"\x80\x04\x8c\x0bcollections\x8c\x16OrderedDict.__reduce__\x93.",
                                  ["collections.OrderedDict.__reduce__"]),
        "INST": (b"(S'" + touch.encode() + b"'\nios\nsystem\n.", ["os.system"]),
        "OBJ": (b"\x80\x02ccollections\nOrderedDict\n(o.", ["OBJ"]),
        "NEWOBJ": (b"\x80\x02ccollections\nOrderedDict\n)\x81.", ["NEWOBJ"]),
        "EXT": (b"\x80\x02\x82\x01.", ["EXT1"]),
        "call a string": (b"\x80\x02X\x02\x00\x00\x00ls)R.", ["calls a str value"]),
        "call a built dict": (b"\x80\x02ccollections\nOrderedDict\n)R)R.", ["calls a OrderedDict value"]),
        "OrderedDict with junk args": (b"\x80\x02ccollections\nOrderedDict\nK\x05\x85R.", ["OrderedDict is called"]),
        "rebuild_from_type with OrderedDict": (
            b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ccollections\nOrderedDict\nctorch\nTensor\n)}tR.",
            ["not a tensor rebuild function"]),
        "huge bytearray": (b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R.", ["__builtin__.bytearray"]),
        "BUILD on list": (b"\x80\x02]}X\x01\x00\x00\x00aK\x01sb.", ["BUILD"]),
        "APPEND on dict": (b"\x80\x02}K\x01a.", ["APPEND to a dict"]),
        "text persistent id": (b"P1\n.", ["PERSID"]),
        "unknown opcode": (b"\x80\x02\xff.", ["unknown opcode 0xff"]),
        "negative memo": (b"\x80\x02Np-1\n.", ["negative memo"]),
        "missing memo": (b"\x80\x02h\x05.", ["Memo value not found"]),
        "huge long": (b"\x80\x02\x8b\x00\x00\x00\x10" + b"\x00" * 16, ["too large"]),
    }


def write_raw_safetensors(path, header, data=b"", header_len=None):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(raw) if header_len is None else header_len
    Path(path).write_bytes(n.to_bytes(8, "little") + raw + data)
    return path


def zip_bomb(path, mib=256):
    """A torch-style archive whose storage record is `mib` MiB of zeros, deflated to about 1/1000 of that."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}.", compress_type=zipfile.ZIP_STORED)
        with z.open("archive/data/0", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(mib):
                member.write(chunk)
    return path


def key_attack_pickles():
    """{name: (data.pkl bytes, fragment of the refusal)}: dict keys and set elements whose hashing would crash the
    interpreter (a deeply nested tuple), take 2**100 steps (a tuple of shared tuples) or quadratic time (keys crafted
    to share one hash)."""
    nested = b")" + b"\x85" * 100_000      # ((((),),),...): EMPTY_TUPLE, then TUPLE1 100,000 times
    shared = b")" + b"2\x86" * 100          # t = (t, t) 100 times: DUP, TUPLE2
    colliding = b"".join(b"\x8a\x09" + (k * (2 ** 61 - 1)).to_bytes(9, "little", signed=True) + b"K\x00"
                         for k in range(1, 4))  # ints equal mod 2**61 - 1 share one hash
    flat = b"".join(b"(K\x01J" + k.to_bytes(4, "little") + b"tK\x00" for k in range(5000))  # 5000 (1, k) keys
    return {
        "nested tuple key (SETITEM)": (b"\x80\x02}" + nested + b"K\x01s.", "as a dict key"),
        "shared tuples key (SETITEM)": (b"\x80\x02}" + shared + b"K\x01s.", "as a dict key"),
        "nested tuple key (DICT)": (b"\x80\x02(" + nested + b"K\x01d.", "as a dict key"),
        "shared tuples in a set": (b"\x80\x02c__builtin__\nset\n" + shared + b"\x85\x85R.", "__builtin__.set"),
        "shared tuples in a frozenset": (b"\x80\x04(" + shared + b"\x91.", "FROZENSET"),
        "shared tuples in OrderedDict pairs": (b"\x80\x02ccollections\nOrderedDict\n" + shared + b"K\x01\x86\x85\x85R.",
                                               "as a dict key"),
        "ints sharing one hash": (b"\x80\x02}(" + colliding + b"u.", "as a dict key"),
        "5000 tuple keys": (b"\x80\x02}(" + flat + b"u.", "as a dict key"),
    }
