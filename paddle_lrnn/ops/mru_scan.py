"""MRU scan: the Matrix Recurrent Unit's cumulative matrix product along time, as a custom operator
(kernels in custom_ops/kernels/mru_scan.h, .cuh)."""
import paddle

from . import checks
from .library import library

OP = "paddle_lrnn.ops.mru_scan"
MAX_CUDA_D = 32  # the CUDA kernels keep a d x d matrix in one warp's registers (the operator checks it)


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (checks)
def check_args(m, state):
    checks.tensor(OP, "m", m, "[B, H, T, d, d]")
    B, H, T, d, d2 = m.shape
    if d != d2:
        raise ValueError(f"{OP}: the matrices of m must be square, got m of shape {list(m.shape)}; expected "
                         f"[B, H, T, d, d]")
    if state is not None:
        checks.tensor(OP, "state", state, "[B, H, d, d]")
        checks.shape(OP, "state", state, [B, H, d, d], f" ([B, H, d, d] for m of shape {list(m.shape)})")
        checks.same_place(OP, ["m", "state"], [m, state])


def identity_state(batch, heads, d, dtype=paddle.float32):
    """The "no history" state [batch, heads, d, d]: identity matrices."""
    return paddle.broadcast_to(paddle.eye(d, dtype=dtype), [batch, heads, d, d])


def mru_scan(m, state=None):
    """Inclusive prefix products of per-step matrices, the new matrix multiplied on the right.

    For every batch row b and head h:  prefix[b, h, t] = S0 @ m[b, h, 0] @ m[b, h, 1] @ ... @ m[b, h, t],
    with S0 = state[b, h] (the identity when state is None). Feeding a sequence in pieces, each with the state the
    previous piece returned, equals one pass.

    Args:
        m: [B, H, T, d, d] per-step matrices; float32, float64, or float16/bfloat16 (accumulated in float32).
            Any T >= 1; d <= 32 on GPU, any d on CPU.
        state: optional [B, H, d, d] initial state S0 (any float dtype; used in float32, float64 for float64 m).

    Returns:
        (prefix [B, H, T, d, d] in m's dtype, final state [B, H, d, d] = prefix[:, :, -1] in float32, float64 for
        float64 m). Both are differentiable w.r.t. m and the initial state.
    """
    check_args(m, state)
    acc = checks.acc_dtype(m.dtype)
    if state is None:
        B, H, _, d, _ = m.shape
        state = identity_state(B, H, d, acc)
        state.stop_gradient = True
    prefix, state = library().lrnn_mru_scan(m, state.astype(acc))
    return prefix, state
