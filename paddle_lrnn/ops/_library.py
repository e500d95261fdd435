"""Loads the compiled operator library (paddle_lrnn._C) on first use, never at `import paddle_lrnn`."""
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
