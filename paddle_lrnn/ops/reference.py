"""Pure-Paddle versions of every operator: the specification the kernels are tested against.

Same signatures and state layouts as the public operators, written as plainly as possible (Python loops over time
where the math is a recurrence). They are slow and meant for tests, debugging and documentation.
"""
import paddle
import paddle.nn.functional as F

from . import _checks, timex as _timex, wkv as _wkv


def wkv(w, u, k, v, state=None, *, eps=0.0):
    """Reference of paddle_lrnn.ops.wkv: the same log-scaled recurrence, one time step per loop iteration."""
    _wkv.check_args(w, u, k, v, state)
    dtype, acc = k.dtype, _checks.acc_dtype(k.dtype)
    w, u, k, v = w.astype(acc), u.astype(acc), k.astype(acc), v.astype(acc)
    if state is None:
        state = _wkv.initial_state(k.shape[0], k.shape[2], acc)
    state = state.astype(acc)
    aa, bb, pp = state[:, 0], state[:, 1], state[:, 2]
    ys = []
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]
        uk = u + kt
        p = paddle.maximum(pp, uk)
        e1, e2 = paddle.exp(pp - p), paddle.exp(uk - p)
        den = e1 * bb + e2
        if eps > 0:
            den = den + eps * paddle.exp(-p)
        ys.append((e1 * aa + e2 * vt) / den)
        decayed = pp - w
        p = paddle.maximum(decayed, kt)
        e1, e2 = paddle.exp(decayed - p), paddle.exp(kt - p)
        aa, bb, pp = e1 * aa + e2 * vt, e1 * bb + e2, p
    y = paddle.stack(ys, axis=1).astype(dtype)
    return y, paddle.stack([aa, bb, pp], axis=1)


def timex(w, x, *, eps=0.0):
    """Reference of paddle_lrnn.ops.timex: the convolution written with conv1d, as the original's fallback."""
    _timex.check_args(w, x)
    B, C, T = x.shape
    kernel = w[:, w.shape[1] - T:].astype(x.dtype).unsqueeze(1)  # [C, 1, T]: index j holds lag T-1-j
    padded = F.pad(x, [T - 1, 0], data_format="NCL")
    return F.conv1d(padded, kernel, groups=C) + eps


# ---- MRU scan ----------------------------------------------------------------------------------------------------
from . import mru_scan as _mru_scan  # noqa: E402


def mru_scan(m, state=None):
    """Reference of paddle_lrnn.ops.mru_scan: the sequential product, one paddle.matmul per time step."""
    _mru_scan.check_args(m, state)
    dtype, acc = m.dtype, _checks.acc_dtype(m.dtype)
    s = None if state is None else state.astype(acc)
    prefixes = []
    for mt in paddle.unbind(m.astype(acc), axis=2):  # unbind, not m[:, :, t]: its backward is one stack
        s = mt if s is None else paddle.matmul(s, mt)
        prefixes.append(s)
    return paddle.stack(prefixes, axis=2).astype(dtype), s
