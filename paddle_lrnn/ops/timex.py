"""TimeX: RWKV-v2's original causal depthwise convolution as a custom operator (kernels/timex.h, .cuh), and the
same operator as a general causal depthwise 1-D convolution with a short kernel."""
import paddle

from . import _checks
from ._library import library

OP = "paddle_lrnn.ops.timex"


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (_checks)
def check_args(w, x, op=OP, require_full_kernel=True, eps=0.0):
    _checks.tensor(op, "x", x, "[B, C, T]")
    _checks.tensor(op, "w", w, "[C, L]")
    B, C, T = x.shape
    if w.shape[0] != C:
        raise ValueError(f"{op}: w has shape {list(w.shape)}, expected [{C}, L] (one kernel per channel of x)")
    if require_full_kernel and T > w.shape[1]:
        raise ValueError(f"{op}: sequence length {T} exceeds the kernel length {w.shape[1]} (the context length); "
                         "TimeX needs T <= L")
    _checks.same_place(op, ["w", "x"], [w, x])
    _checks.number(op, "eps", eps)


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


def depthwise_conv1d(w, x):
    """Causal depthwise 1-D convolution with a kernel of L taps, any sequence length (the TimeX kernel with lags
    beyond L taken as zero):

        out[b, c, t] = sum_{d=0..min(t, L-1)} w[c, L-1-d] * x[b, c, t-d]

    w [C, L] is laid out like a cross-correlation weight (PyTorch's Conv1d weight [C, 1, L] squeezed), x [B, C, T].
    Returns [B, C, T], differentiable w.r.t. w and x.
    """
    check_args(w, x, "paddle_lrnn.ops.depthwise_conv1d", require_full_kernel=False)
    return library().lrnn_timex(w.astype(x.dtype), x, 0.0)
