"""depthwise_conv1d: a causal depthwise 1-D convolution with a short kernel, any sequence length (HGRN2's short
convolution). It runs the TimeX operator (kernels/timex.h, .cuh; binding custom_ops/paddle/timex.cc, .cu), whose lags
beyond the kernel's length are zero."""
from .library import library
from .timex import check_args

OP = "paddle_lrnn.ops.depthwise_conv1d"


def depthwise_conv1d(w, x):
    """Causal depthwise 1-D convolution with a kernel of L taps, any sequence length (the TimeX kernel with lags
    beyond L taken as zero):

        out[b, c, t] = sum_{d=0..min(t, L-1)} w[c, L-1-d] * x[b, c, t-d]

    w [C, L] is laid out like a cross-correlation weight (PyTorch's Conv1d weight [C, 1, L] squeezed), x [B, C, T].
    Returns [B, C, T], differentiable w.r.t. w and x.
    """
    check_args(w, x, OP, require_full_kernel=False)
    return library().lrnn_timex(w.astype(x.dtype), x, 0.0)
