"""TimeX: RWKV-v2's original causal depthwise convolution as a custom operator (kernels/timex.h, .cuh). The same
kernel with a short filter is depthwise_conv1d (depthwise_conv1d.py)."""
import paddle

from . import checks
from .library import library

OP = "paddle_lrnn.ops.timex"


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (checks)
def check_args(w, x, op=OP, require_full_kernel=True, eps=0.0):
    checks.tensor(op, "x", x, "[B, C, T]")
    checks.tensor(op, "w", w, "[C, L]")
    B, C, T = x.shape
    if w.shape[0] != C:
        raise ValueError(f"{op}: w has shape {list(w.shape)}, expected [{C}, L] (one kernel per channel of x)")
    if require_full_kernel and T > w.shape[1]:
        raise ValueError(f"{op}: sequence length {T} exceeds the kernel length {w.shape[1]} (the context length); "
                         "TimeX needs T <= L")
    checks.same_place(op, ["w", "x"], [w, x])
    checks.number(op, "eps", eps)


def timex(w, x, *, eps=0.0):
    """Causal depthwise convolution with a context-long kernel, as RWKV-v2's TimeX CUDA operator:

        out[b, c, t] = eps + sum_{d=0..t} w[c, L-1-d] * x[b, c, t-d]

    Lag d reads column L-1-d, so a sequence shorter than the kernel uses its last T columns (the original kernel
    required T == L and silently read wrong weights otherwise).

    Args:
        w: [C, L] per-channel kernels; cast to x's dtype.
        x: [B, C, T] with T <= L.
        eps: constant added to every output (v2 adds 1e-16 in its denominator pass); it gets no gradient.
    Returns:
        [B, C, T], differentiable w.r.t. w and x.
    """
    check_args(w, x, eps=eps)
    return library().lrnn_timex(w.astype(x.dtype), x, float(eps))
