"""GLA: the gated outer-product recurrence of HGRN2 as a custom operator (kernels in custom_ops/kernels/gla.h, .cuh)."""
import paddle

from . import checks
from .library import double_attr, library

OP = "paddle_lrnn.ops.gla"


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (checks)
def check_args(q, k, v, g, state, scale=None):
    """One clear error for a bad argument: rank, dtype, shapes of q/k/v/g/state, empty dimensions, devices."""
    checks.tensor(OP, "q", q, "[B, T, H, K]")
    checks.tensor(OP, "k", k, "[B, T, H, K]")
    checks.tensor(OP, "v", v, "[B, T, H, V]")
    checks.tensor(OP, "g", g, "[B, T, H, K]")
    B, T, H, K = q.shape
    checks.shape(OP, "k", k, q.shape, " (the shape of q)")
    checks.shape(OP, "g", g, q.shape, " (the shape of q: one log forget gate per key channel)")
    V = v.shape[3]
    checks.shape(OP, "v", v, [B, T, H, V], f" ([batch, time, heads, V] matching q of shape {list(q.shape)})")
    checks.same_dtype(OP, ["q", "k", "v", "g"], [q, k, v, g])
    tensors, names = [q, k, v, g], ["q", "k", "v", "g"]
    if state is not None:
        checks.tensor(OP, "state", state, "[B, H, K, V]")
        checks.shape(OP, "state", state, [B, H, K, V], f" ([batch, heads, K, V] for q of shape {list(q.shape)} "
                      f"and v of shape {list(v.shape)})")
        tensors.append(state)
        names.append("state")
    checks.same_place(OP, names, tensors)
    if scale is not None:
        checks.number(OP, "scale", scale)


def default_scale(q):
    return q.shape[3] ** -0.5


def gla(q, k, v, g, state=None, *, scale=None):
    """The gated outer-product recurrence (GLA form), per batch row and head:

        S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,    o_t = scale * q_t S_t

    with q_t, k_t, g_t row vectors of K, v_t and o_t of V, and S of shape [K, V]. HGRN2 uses q = output gate,
    k = 1 - forget gate, v = input, g = log forget gate.

    Args:
        q, k, g: [B, T, H, K]; v: [B, T, H, V]. One dtype: float32, float64, or float16/bfloat16 (accumulated in
            float32). g is the log forget gate and must be <= 0. It is not checked (that would cost a pass over g and,
            on a GPU, a device-to-host sync per call); a positive g is undefined behaviour: the CUDA chunked kernel
            relies on non-increasing gate cumsums to keep every exponent <= 0 and could overflow.
        state: optional [B, H, K, V] (K-first) from an earlier call; float32 (float64 for float64 inputs); other
            float dtypes are cast. None means a zero state. Feeding a sequence in pieces with the state equals one pass.
        scale: the output scale; defaults to K ** -0.5.

    Returns:
        (o [B, T, H, V] in the inputs' dtype, final state [B, H, K, V] in float32, float64 for float64 inputs).
        Both are differentiable w.r.t. q, k, v, g and the initial state.
    """
    check_args(q, k, v, g, state, scale)
    acc = checks.acc_dtype(q.dtype)
    B, T, H, K = q.shape
    if state is None:
        state = paddle.zeros([B, H, K, v.shape[3]], acc)
    scale = default_scale(q) if scale is None else float(scale)
    o, state = library().lrnn_gla(q, k, v, g, state.astype(acc), *double_attr(scale))
    return o, state
