"""Pure-Paddle versions of every operator: the specification the kernels are tested against.

Same signatures and state layouts as the public operators, written as plainly as possible (Python loops over time
where the math is a recurrence). They are slow and meant for tests, debugging and documentation.
"""
import paddle
import paddle.nn.functional as F

from .checks import acc_dtype
from .gla import check_args as check_gla_args, default_scale as gla_default_scale
from .mru_scan import check_args as check_mru_args
from .timex import check_args as check_timex_args
from .weight_matmul import check_args as check_weight_matmul_args, check_quantize_args
from .wkv import check_args as check_wkv_args, initial_state as wkv_initial_state


_MAX_EXP = {paddle.float32: 80.0, paddle.float64: 700.0}  # below the largest x with a finite e^x


def wkv(w, u, k, v, state=None, *, eps=0.0):
    """Reference of paddle_lrnn.ops.wkv: the same log-scaled recurrence, one time step per loop iteration."""
    check_wkv_args(w, u, k, v, state, eps)
    dtype, acc = k.dtype, acc_dtype(k.dtype)
    w, u, k, v = w.astype(acc), u.astype(acc), k.astype(acc), v.astype(acc)
    if state is None:
        state = wkv_initial_state(k.shape[0], k.shape[2], acc)
    state = state.astype(acc)
    aa, bb, pp = state[:, 0], state[:, 1], state[:, 2]
    ys = []
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]
        uk = u + kt
        p = paddle.maximum(pp, uk)
        e1, e2 = paddle.exp(pp - p), paddle.exp(uk - p)
        den = e1 * bb + e2
        if eps > 0:  # (e^-p overflows for hugely negative keys; the term then dwarfs the rest of the denominator,
            # y is 0 either way, and an infinite term would make the gradients NaN (inf * 0): capped)
            den = den + eps * paddle.exp(paddle.minimum(-p, paddle.full_like(p, _MAX_EXP[acc])))
        ys.append((e1 * aa + e2 * vt) / den)
        decayed = pp - w
        p = paddle.maximum(decayed, kt)
        e1, e2 = paddle.exp(decayed - p), paddle.exp(kt - p)
        aa, bb, pp = e1 * aa + e2 * vt, e1 * bb + e2, p
    y = paddle.stack(ys, axis=1).astype(dtype)
    return y, paddle.stack([aa, bb, pp], axis=1)


def timex(w, x, *, eps=0.0):
    """Reference of paddle_lrnn.ops.timex: the convolution written with conv1d, as the original's fallback."""
    check_timex_args(w, x, eps=eps)
    B, C, T = x.shape
    kernel = w[:, w.shape[1] - T:].astype(x.dtype).unsqueeze(1)  # [C, 1, T]: index j holds lag T-1-j
    padded = F.pad(x, [T - 1, 0], data_format="NCL")
    return F.conv1d(padded, kernel, groups=C) + eps


def depthwise_conv1d(w, x):
    """Reference of paddle_lrnn.ops.depthwise_conv1d: conv1d over x left-padded with L-1 zeros."""
    check_timex_args(w, x, "paddle_lrnn.ops.depthwise_conv1d", require_full_kernel=False)
    L = w.shape[1]
    padded = F.pad(x, [L - 1, 0], data_format="NCL")
    return F.conv1d(padded, w.astype(x.dtype).unsqueeze(1), groups=x.shape[1])


def gla(q, k, v, g, state=None, *, scale=None):
    """Reference of paddle_lrnn.ops.gla: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t, one token per
    loop iteration, in the accumulator dtype (float32, float64 for float64 inputs)."""
    check_gla_args(q, k, v, g, state, scale)
    dtype, acc = q.dtype, acc_dtype(q.dtype)
    B, T, H, K = q.shape
    V = v.shape[3]
    scale = gla_default_scale(q) if scale is None else float(scale)
    q, k, v, g = q.astype(acc), k.astype(acc), v.astype(acc), g.astype(acc)
    S = paddle.zeros([B, H, K, V], acc) if state is None else state.astype(acc)
    outs = []
    for t in range(T):
        S = paddle.exp(g[:, t]).unsqueeze(-1) * S + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outs.append(scale * paddle.matmul(q[:, t].unsqueeze(-2), S).squeeze(-2))
    return paddle.stack(outs, axis=1).astype(dtype), S


def mru_scan(m, state=None):
    """Reference of paddle_lrnn.ops.mru_scan: the sequential product, one paddle.matmul per time step."""
    check_mru_args(m, state)
    dtype, acc = m.dtype, acc_dtype(m.dtype)
    s = None if state is None else state.astype(acc)
    prefixes = []
    for mt in paddle.unbind(m.astype(acc), axis=2):  # unbind, not m[:, :, t]: its backward is one stack
        s = mt if s is None else paddle.matmul(s, mt)
        prefixes.append(s)
    return paddle.stack(prefixes, axis=2).astype(dtype), s


def dequantized(weight, scale=None, transpose_weight=False):
    """A weight of weight_matmul widened to float32, times its per-output scale for int8."""
    w = weight.astype(paddle.float32)
    if scale is None:
        return w
    return w * (scale.unsqueeze(1) if transpose_weight else scale)


def weight_matmul(x, weight, scale=None, *, transpose_weight=False):
    """Reference of paddle_lrnn.ops.weight_matmul: the weight widened to float32 (times its scale), paddle.matmul."""
    check_weight_matmul_args(x, weight, scale, transpose_weight)
    return paddle.matmul(x, dequantized(weight, scale, transpose_weight), transpose_y=transpose_weight)


def quantize_int8(weight):
    """Reference of paddle_lrnn.ops.quantize_int8: scale = max |w| / 127 per column, q = round(w / scale)."""
    check_quantize_args(weight)
    w = weight.astype(paddle.float32)
    scale = w.abs().max(axis=0) / paddle.full([], 127.0)  # a tensor divisor: a true division, not * (1 / 127)
    nonzero = scale > 0
    q = paddle.round(w / paddle.where(nonzero, scale, paddle.ones_like(scale)))  # halves to even
    q = paddle.where(nonzero, q, paddle.zeros_like(q)).clip(-127, 127)
    return q.astype(paddle.int8), scale
