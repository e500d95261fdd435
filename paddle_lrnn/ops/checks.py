"""Argument checks shared by the public operators: one clear error before any kernel sees a bad tensor. Public: the
models check their inputs with the same helpers (is_tensor, dims_match), eager and traced alike.

They also run while paddle.jit.to_static traces a model (paddle_lrnn.export): there they are kept out of the AST
translation (not_to_static) and check what is known then, the rank, the dtype and the fixed dimensions; a dimension
left open by the InputSpec (-1 in Value.shape, a Value in a translated caller's x.shape) matches anything."""
import math
import numbers

import paddle

FLOATING = (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)


def is_tensor(x):
    """A tensor of eager mode, or a value of a static program being traced."""
    return isinstance(x, (paddle.Tensor, paddle.pir.Value))


@paddle.jit.not_to_static
def dims_match(actual, expected):
    """Equal shapes, where a dimension unknown while tracing (negative, or not an int) matches anything."""
    if len(actual) != len(expected):
        return False
    return all(a == e for a, e in zip(actual, expected) if _known(a) and _known(e))


def _known(dim):
    return isinstance(dim, int) and dim >= 0


def _dtype_name(dtype):
    return str(dtype).replace("paddle.", "")


@paddle.jit.not_to_static
def tensor(op, name, x, layout, dtypes=FLOATING):
    """Checks that x is a Tensor with len(layout) dimensions (layout names them, e.g. "[B, T, C]") and a float dtype."""
    if not is_tensor(x):
        raise TypeError(f"{op}: {name} must be a paddle.Tensor {layout}, got {type(x).__name__}")
    ndim = layout.count(",") + 1
    if x.ndim != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions {layout}, got shape {list(x.shape)}")
    if x.dtype not in dtypes:
        allowed = ", ".join(_dtype_name(d) for d in dtypes)
        raise TypeError(f"{op}: {name} has dtype {_dtype_name(x.dtype)}, expected one of {allowed}")
    if 0 in x.shape:
        raise ValueError(f"{op}: {name} is empty (shape {list(x.shape)}); every dimension must be at least 1")


@paddle.jit.not_to_static
def shape(op, name, x, expected, what=""):
    if not dims_match(list(x.shape), list(expected)):
        raise ValueError(f"{op}: {name} has shape {list(x.shape)}, expected {list(expected)}{what}")


@paddle.jit.not_to_static
def same_dtype(op, names, tensors):
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        found = ", ".join(f"{n} {_dtype_name(t.dtype)}" for n, t in zip(names, tensors))
        raise TypeError(f"{op}: inputs must share one dtype, got {found}")


@paddle.jit.not_to_static
def same_place(op, names, tensors):
    if not paddle.in_dynamic_mode():  # a traced program has no places; it runs where it is loaded
        return
    places = [str(t.place) for t in tensors]
    if len(set(places)) > 1:
        found = ", ".join(f"{n} on {p}" for n, p in zip(names, places))
        raise ValueError(f"{op}: inputs must be on one device, got {found}")


@paddle.jit.not_to_static
def number(op, name, value, minimum=None):
    """Checks that a scalar argument (eps, scale) is a finite real number, >= minimum if given; returns it as float."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{op}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def acc_dtype(dtype):
    """The dtype of states and accumulators for inputs of `dtype`: float64 for float64, float32 otherwise."""
    return paddle.float64 if dtype == paddle.float64 else paddle.float32
