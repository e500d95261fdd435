"""Builds the CPU emulation of our CUDA kernels and loads it with ctypes.

Each glue source in this folder (e.g. wkv_glue.cc) includes a custom_ops/kernels/*.cuh under the emulation
(cuda_emulation.h) and exports launchers with LRNN_EMU_EXPORT_DTYPES (glue.h). `load("wkv")` compiles
wkv_glue.cc with emu_api.cc into a shared library with g++, caches it under the system temp dir keyed by a hash of
every input (sources, flags, compiler), and returns a Library. Concurrent builds (two pytest processes) are safe: each
compiles to a private file and renames it into place.

Environment:
  CXX                     the compiler (default g++)
  LRNN_EMU_OPT            optimisation flag (default -O1)
  LRNN_EMU_SANITIZE       e.g. "undefined" or "address,undefined": adds -fsanitize=... (for address, the test
                          process needs LD_PRELOAD=$(g++ -print-file-name=libasan.so); see tests/cuda_emu/README.md)
  LRNN_EMU_BUILD_DIR      where libraries are cached (default: <tempdir>/lrnn_cuda_emu-<uid>)
  LRNN_EMU_SCHEDULE       the schedule libraries start with (default parallel; see Library.set_schedule)
"""
import ctypes
import glob
import hashlib
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CUSTOM_OPS = os.path.join(ROOT, "custom_ops")

# dtype name -> (suffix of the exported symbols, numpy storage dtype)
DTYPES = {
    "float32": ("f32", np.float32),
    "float64": ("f64", np.float64),
    "float16": ("f16", np.float16),
    "bfloat16": ("bf16", np.uint16),  # raw bits
}
SCHEDULES = {"parallel": 0, "forward": 1, "reverse": 2, "random": 3}
_CTYPES = {"p": ctypes.c_void_p, "q": ctypes.c_int64, "i": ctypes.c_int32, "f": ctypes.c_float, "d": ctypes.c_double}


class EmulationError(RuntimeError):
    """A launcher under emulation returned an error (bad launch configuration, deadlock, divergent barrier...)."""


def compiler():
    return os.environ.get("CXX", "g++")


def flags():
    out = [
        "-std=c++17", os.environ.get("LRNN_EMU_OPT", "-O1"), "-g0", "-fPIC", "-shared", "-pthread",
        "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-Wl,-Bsymbolic", "-fno-strict-aliasing",
        "-Wall", "-Wno-unknown-pragmas", "-DLRNN_CUDA_EMULATION", f"-I{HERE}", f"-I{CUSTOM_OPS}",
    ]
    sanitize = os.environ.get("LRNN_EMU_SANITIZE")
    if sanitize:
        out += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    return out


def build_dir():
    path = os.environ.get("LRNN_EMU_BUILD_DIR") or os.path.join(
        tempfile.gettempdir(), f"lrnn_cuda_emu-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    os.makedirs(path, exist_ok=True)
    return path


_compiler_id = None


def _compiler_id_text():
    global _compiler_id
    if _compiler_id is None:
        _compiler_id = subprocess.run([compiler(), "--version"], capture_output=True, text=True, check=True).stdout
    return _compiler_id


def _inputs(glue):
    """Every file whose content the library depends on (the key of the cache)."""
    files = sorted(glob.glob(os.path.join(CUSTOM_OPS, "kernels", "*")))
    files += sorted(glob.glob(os.path.join(HERE, "*.h")))
    files += [os.path.join(HERE, "emu_api.cc"), glue]
    return files


def glue_path(op):
    return os.path.join(HERE, f"{op}_glue.cc")


def build(op):
    """Compiles <op>_glue.cc (if not cached) and returns the path of the shared library."""
    glue = glue_path(op)
    if not os.path.exists(glue):
        raise FileNotFoundError(f"no glue source for {op!r}: expected {glue}")
    cmd_flags = flags()
    h = hashlib.sha256()
    for part in [_compiler_id_text(), compiler(), *cmd_flags]:
        h.update(part.encode() + b"\0")
    for f in _inputs(glue):
        h.update(os.path.basename(f).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read())
    target = os.path.join(build_dir(), f"{op}-{h.hexdigest()[:20]}.so")
    if os.path.exists(target):
        return target
    fd, tmp = tempfile.mkstemp(prefix=f"{op}-", suffix=".so.tmp", dir=os.path.dirname(target))
    os.close(fd)
    cmd = [compiler(), *cmd_flags, glue, os.path.join(HERE, "emu_api.cc"), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"building the CUDA emulation of {op} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


class Library:
    """One emulation library: its exported launchers, schedule control and messages."""

    def __init__(self, path):
        self.path = path
        self._lib = ctypes.CDLL(path)
        self._lib.lrnn_emu_set_schedule.argtypes = [ctypes.c_int64, ctypes.c_int64]
        self._lib.lrnn_emu_set_schedule.restype = None
        self._lib.lrnn_emu_last_message.argtypes = [ctypes.c_char_p, ctypes.c_int64]
        self._lib.lrnn_emu_last_message.restype = ctypes.c_int64
        self._fns = {}
        self.default_schedule = os.environ.get("LRNN_EMU_SCHEDULE", "parallel")
        self.set_schedule(self.default_schedule)

    def function(self, name):
        """The exported function `name` as a ctypes function with its prototype."""
        fn = self._fns.get(name)
        if fn is None:
            try:
                addr = ctypes.c_void_p.in_dll(self._lib, name).value
                sig = ctypes.c_char_p.in_dll(self._lib, name + "__sig").value.decode()
            except ValueError as err:
                raise AttributeError(f"{os.path.basename(self.path)} exports no {name}") from err
            proto = ctypes.CFUNCTYPE(ctypes.c_int, *(_CTYPES[c] for c in sig))
            fn = self._fns[name] = (proto(addr), sig)
        return fn

    def call(self, name, *args):
        """Calls an exported launcher. Arrays pass their data pointer, None a null pointer; raises EmulationError
        with the emulation's message if it returns non-zero."""
        fn, sig = self.function(name)
        if len(args) != len(sig):
            raise TypeError(f"{name} takes {len(sig)} arguments ({sig}), got {len(args)}")
        conv = []
        for a, c in zip(args, sig):
            if c == "p":
                if a is None:
                    conv.append(None)
                elif isinstance(a, np.ndarray):
                    if not a.flags.c_contiguous:
                        raise ValueError(f"{name}: arrays must be C-contiguous")
                    conv.append(a.ctypes.data)
                else:
                    conv.append(a)
            else:
                conv.append(a)
        err = fn(*conv)
        if err != 0:
            raise EmulationError(f"{name} returned CUDA error {err}: {self.last_message()}")

    def set_schedule(self, schedule=None, seed=0):
        """parallel: a block's threads run concurrently (OS threads); forward / reverse / random: one thread at a
        time (fibers), switching at synchronisation points, lowest / highest / a random thread first, blocks in the
        same order. None: the library's default (LRNN_EMU_SCHEDULE or parallel)."""
        self._lib.lrnn_emu_set_schedule(SCHEDULES[schedule or self.default_schedule], seed)

    def last_message(self):
        buf = ctypes.create_string_buffer(4096)
        self._lib.lrnn_emu_last_message(buf, len(buf))
        return buf.value.decode(errors="replace")

    def raw(self, name):
        """A plain exported C function (e.g. lrnn_emu_float_to_half) as a ctypes function."""
        return getattr(self._lib, name)


_loaded = {}


def load(*ops):
    """Builds (in parallel, 2 at a time) and loads the emulation libraries of `ops`; returns one Library or a list."""
    missing = [op for op in ops if op not in _loaded]
    if missing:
        with ThreadPoolExecutor(max_workers=2) as pool:
            paths = list(pool.map(build, missing))
        for op, path in zip(missing, paths):
            _loaded[op] = Library(path)
    libs = [_loaded[op] for op in ops]
    return libs[0] if len(libs) == 1 else libs


# ----- host memory that catches out-of-bounds writes and unwritten outputs -------------------------------------------
class Arena:
    """Allocates arrays inside guard zones filled with 0xff bytes (NaN for floating types). `output` arrays start as
    that poison too, so any element a kernel leaves unwritten shows up as NaN; `check()` verifies that no guard byte
    changed (an out-of-bounds write) and that no input changed."""

    GUARD = 256  # bytes each side; keeps 256-byte alignment

    def __init__(self):
        self._blocks = []  # (raw bytes, data view, original copy of an input or None)

    def _alloc(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = np.empty(nbytes + 2 * self.GUARD + 256, np.uint8)
        start = (-raw.ctypes.data) % 256
        raw = raw[start:start + nbytes + 2 * self.GUARD]
        raw.fill(0xFF)
        view = raw[self.GUARD:self.GUARD + nbytes].view(dtype).reshape(shape)
        return raw, view

    def output(self, shape, dtype):
        raw, view = self._alloc(shape, dtype)
        self._blocks.append((raw, view, None))
        return view

    def input(self, array, dtype=None):
        array = np.ascontiguousarray(array, dtype=dtype)
        raw, view = self._alloc(array.shape, array.dtype)
        view[...] = array
        self._blocks.append((raw, view, array.copy()))
        return view

    def check(self):
        for i, (raw, view, original) in enumerate(self._blocks):
            g = self.GUARD
            if not (np.all(raw[:g] == 0xFF) and np.all(raw[-g:] == 0xFF)):
                raise AssertionError(f"buffer {i} {view.shape} {view.dtype}: a write landed in its guard zone")
            if original is not None and view.tobytes() != original.tobytes():
                raise AssertionError(f"input buffer {i} {view.shape} {view.dtype} was modified")


# ----- half-precision storage helpers (numpy has no bfloat16) -------------------------------------------------------
def bfloat16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN -> 0x7fff, as CUDA)."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FFF), r)


def bfloat16_to_float32(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_storage(x, dtype):
    """float array -> the numpy array a kernel of `dtype` reads (bfloat16 as raw bits)."""
    if dtype == "bfloat16":
        return bfloat16_bits(np.asarray(x, np.float32))
    return np.asarray(x, DTYPES[dtype][1])


def from_storage(x, dtype):
    """A kernel's array of `dtype` -> float64."""
    if dtype == "bfloat16":
        return bfloat16_to_float32(x).astype(np.float64)
    return np.asarray(x, np.float64)


def round_to(x, dtype):
    """x rounded to `dtype` and back to float64: the values a kernel of that dtype sees."""
    return from_storage(to_storage(x, dtype), dtype)
