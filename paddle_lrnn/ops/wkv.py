"""WKV: the RWKV time-mix recurrence as a custom operator (kernels in custom_ops/kernels/wkv.h, .cuh)."""
import paddle

from . import checks
from .library import double_attr, library

OP = "paddle_lrnn.ops.wkv"
EMPTY_LOG_SCALE = -1e38  # pp of an empty state: the log-space zero, finite so that differences stay finite


def initial_state(batch, channels, dtype=paddle.float32):
    """The empty WKV state [batch, 3, channels]: no tokens seen (aa = bb = 0, pp = -1e38)."""
    return paddle.concat(
        [paddle.zeros([batch, 2, channels], dtype), paddle.full([batch, 1, channels], EMPTY_LOG_SCALE, dtype)], axis=1
    )


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (checks)
def check_args(w, u, k, v, state, eps=0.0):
    checks.tensor(OP, "k", k, "[B, T, C]")
    checks.tensor(OP, "v", v, "[B, T, C]")
    checks.tensor(OP, "w", w, "[C]")
    checks.tensor(OP, "u", u, "[C]")
    B, T, C = k.shape
    checks.shape(OP, "v", v, k.shape, " (the shape of k)")
    checks.shape(OP, "w", w, [C], " (one decay per channel of k)")
    checks.shape(OP, "u", u, [C], " (one bonus per channel of k)")
    checks.same_dtype(OP, ["k", "v"], [k, v])
    tensors, names = [w, u, k, v], ["w", "u", "k", "v"]
    if state is not None:
        checks.tensor(OP, "state", state, "[B, 3, C]")
        checks.shape(OP, "state", state, [B, 3, C], " ([batch, (aa, bb, pp), channels] for k of shape "
                      f"{list(k.shape)})")
        tensors.append(state)
        names.append("state")
    checks.same_place(OP, names, tensors)
    checks.number(OP, "eps", eps, minimum=0.0)


def wkv(w, u, k, v, state=None, *, eps=0.0):
    """RWKV's WKV recurrence in O(T), numerically stable for any k.

    For each batch row and channel c, with decay exp(-w[c]) per step and bonus exp(u[c]) for the current token:
        y_t = (a_t + exp(u + k_t) v_t) / (b_t + exp(u + k_t) + eps)
        a_{t+1} = exp(-w) a_t + exp(k_t) v_t,   b_{t+1} = exp(-w) b_t + exp(k_t)
    The sums are kept log-scaled (a = aa * exp(pp), b = bb * exp(pp)), so no exp overflows.

    Args:
        w: [C] decay rates, > 0 (the per-step decay is exp(-w)). RWKV-v2: w = exp(time_decay).
        u: [C] current-token bonus (log scale). RWKV-v2: u = time_first.
        k, v: [B, T, C] keys (log scale) and values; float32, float64, or float16/bfloat16 (accumulated in float32).
        state: optional [B, 3, C] (aa, bb, pp) from an earlier call, float32 (float64 for float64 inputs);
            None means no history. Feeding a sequence in chunks with the state equals one pass.
        eps: added to the linear-space denominator (RWKV-v2 uses 1e-16); 0 for RWKV-4 and later.

    Returns:
        (y [B, T, C] in k's dtype, state [B, 3, C]). Both are differentiable, including w.r.t. the input state.
    """
    check_args(w, u, k, v, state, eps)
    acc = checks.acc_dtype(k.dtype)
    if state is None:
        state = initial_state(k.shape[0], k.shape[2], acc)
    y, state, _ = library().lrnn_wkv(w.astype(acc), u.astype(acc), k, v, state.astype(acc), *double_attr(eps))
    return y, state
