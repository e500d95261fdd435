"""Loads the compiled operator library (paddle_lrnn._C) on first use, never at `import paddle_lrnn`."""
import numpy as np
import paddle

_lib = None


@paddle.jit.not_to_static  # to_static's AST translation cannot compile the `global` statement below
def library():
    """The module holding the registered custom operators (lrnn_wkv, lrnn_timex, ...)."""
    global _lib
    if _lib is None:
        try:
            from paddle_lrnn import _C
        except ImportError as err:
            raise ImportError(
                "paddle_lrnn's operator library is not built. In the repository run "
                "`pip install --no-build-isolation -e .` (see README.md), then retry."
            ) from err
        _lib = _C
    return _lib


@paddle.jit.not_to_static
def double_attr(value):
    """A float for an operator attribute, as the two float32 attributes (hi, lo) with hi + lo == value in double
    precision: Paddle passes float attributes to custom operators as float32, which would round float64 math."""
    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))
