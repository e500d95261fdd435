"""Loads the compiled operator library (paddle_lrnn._C) on first use, never at `import paddle_lrnn`; says which
instruction set its CPU kernels run with."""
import ctypes
import os

import numpy as np
import paddle

ISA_LEVELS = ("baseline", "avx2", "avx512")  # x86-64, x86-64-v3 (AVX2, FMA, F16C), x86-64-v4 (AVX-512)
ISA_VARIABLE = "PADDLE_LRNN_ISA"

_lib = None
_native = None


@paddle.jit.not_to_static  # to_static's AST translation cannot compile the `global` statement below
def library():
    """The module holding the registered custom operators (lrnn_wkv, lrnn_timex, ...)."""
    global _lib
    if _lib is None:
        cap = os.environ.get(ISA_VARIABLE)
        if cap is not None and cap not in ISA_LEVELS:
            raise ValueError(f"{ISA_VARIABLE}={cap!r} is not an instruction-set level; expected one of "
                             f"{', '.join(ISA_LEVELS)} (or leave it unset for the best this processor has)")
        try:
            from paddle_lrnn import _C
        except ImportError as err:
            raise ImportError(
                "paddle_lrnn's operator library is not built. In the repository run "
                "`pip install --no-build-isolation -e .` (see README.md), then retry."
            ) from err
        _lib = _C
    return _lib


def _entry_points():
    """The library's plain C functions (custom_ops/paddle/cpu_isa.cc), through ctypes: the same loaded library and
    state as the operators'."""
    global _native
    if _native is None:
        lib = ctypes.CDLL(library().so_path)
        lib.lrnn_build_march.restype = ctypes.c_char_p
        _native = lib
    return _native


def cpu_isa():
    """The instruction set the CPU kernels run with: "baseline" (x86-64), "avx2" (x86-64-v3) or "avx512"
    (x86-64-v4); the highest this processor supports unless PADDLE_LRNN_ISA caps it."""
    return ISA_LEVELS[_entry_points().lrnn_cpu_isa()]


def cpu_isa_supported():
    """The highest level this processor supports."""
    return ISA_LEVELS[_entry_points().lrnn_cpu_isa_supported()]


def set_cpu_isa_cap(level):
    """Caps the level of the kernels called from now on in this process (tests run every level in one process);
    returns the level now in use (never above what the processor supports)."""
    return ISA_LEVELS[_entry_points().lrnn_set_cpu_isa_cap(ISA_LEVELS.index(level))]


def build_march():
    """The -march the library was compiled with ("x86-64" unless PADDLE_LRNN_NATIVE or PADDLE_LRNN_MARCH said
    otherwise at build time)."""
    return _entry_points().lrnn_build_march().decode()


@paddle.jit.not_to_static
def double_attr(value):
    """A float for an operator attribute, as the two float32 attributes (hi, lo) with hi + lo == value in double
    precision: Paddle passes float attributes to custom operators as float32, which would round float64 math."""
    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))
