"""RWKV-v2 sub-layers: token shift, time-mix (WKV or TimeX), channel-mix and the Head-QK copy head.

Every layer takes its input [B, T, C] plus the state it needs from the previous tokens and returns the new state,
so one token at a time, chunks, and whole sequences all give the same result.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..ops import timex, wkv
from .linear import Linear, as_dtype_of

K_CLAMP = 60.0  # RWKV_K_CLAMP: k = exp(min(Kx, 60))
K_EPS = 1e-16  # RWKV_K_EPS: added to the denominator only


def token_shift(x, prev):
    """x shifted one step along T: row t holds x[t-1]; row 0 holds prev ([B, C], the previous chunk's last row)."""
    return paddle.concat([prev.unsqueeze(1).astype(x.dtype), x[:, :-1]], axis=1)


def mixes(x, prev, *time_mixes):
    """The token-shift mixes x * mu + x[t-1] * (1 - mu), one per mu ([1, 1, C] as stored), each written with one
    product. mu is broadcast as a [C] vector: Paddle's CPU kernels broadcast a [1, 1, C] operand several times
    slower. prev: [B, C], the row before x[0]."""
    shifted = token_shift(x, prev)
    delta = x - shifted
    return [shifted + delta * as_dtype_of(mu, x).reshape([-1]) for mu in time_mixes]


def mix(x, prev, time_mix):
    """v2's single token-shift mix (one mu for all of a sub-layer's projections)."""
    return mixes(x, prev, time_mix)[0]


class RWKV2TimeMix(nn.Layer):
    """The attention substitute. k = exp(min(Kx', 60)), v = Vx', r = Rx'; out = O(sigmoid(r) * wkv / (wk + 1e-16))
    where wkv and wk are decayed sums over the past with weights [exp(time_first), 1, W, W^2, ...],
    W = exp(-exp(time_decay)). `kernel` picks the operator: "wkv" (O(T) recurrence) or "timex" (the original's O(T^2)
    convolution, limited to T <= ctx_len)."""

    def __init__(self, n_embd, ctx_len, kernel="wkv"):
        super().__init__()
        if kernel not in ("wkv", "timex"):
            raise ValueError(f"time_mix_kernel must be 'wkv' or 'timex', got {kernel!r}")
        self.ctx_len, self.kernel = ctx_len, kernel
        self.time_decay = self.create_parameter([n_embd, 1], default_initializer=nn.initializer.Constant(0.0))
        self.time_first = self.create_parameter([n_embd, 1], default_initializer=nn.initializer.Constant(0.0))
        self.time_mix = self.create_parameter([1, 1, n_embd], default_initializer=nn.initializer.Constant(0.0))
        self.key = Linear(n_embd, n_embd, bias_attr=False)
        self.value = Linear(n_embd, n_embd, bias_attr=False)
        self.receptance = Linear(n_embd, n_embd, bias_attr=False)
        self.output = Linear(n_embd, n_embd, bias_attr=False)

    def forward(self, x, shift, wkv_state):
        """x [B, T, C]; shift [B, C]; wkv_state [B, 3, C] (aa, bb, pp) or None. Returns (out, new wkv state)."""
        xx = mix(x, shift, self.time_mix)
        # The recurrence runs in float32 whatever the AMP dtype: exp(60) is far outside float16's range.
        k = paddle.clip(self.key(xx), max=K_CLAMP).astype("float32")
        v = self.value(xx).astype("float32")
        r = self.receptance(xx)
        decay = paddle.exp(self.time_decay.astype("float32")).squeeze(1)  # w: per-step decay exp(-w)
        first = self.time_first.astype("float32").squeeze(1)  # u: log bonus of the current token
        if self.kernel == "wkv":
            y, wkv_state = wkv(decay, first, k, v, wkv_state, eps=K_EPS)
        else:
            y, wkv_state = self._timex(decay, first, k, v, wkv_state)
        return self.output(F.sigmoid(r) * y.astype(r.dtype)), wkv_state

    def _timex(self, decay, first, k, v, state):
        """The same time-mix with v2's TimeX operator, in linear space as the original, plus the carried state:
        a state (a, b) from earlier tokens adds W^t a to the numerator and W^t b to the denominator at step t."""
        T = k.shape[1]
        if T > self.ctx_len:
            raise ValueError(f"time_mix_kernel='timex' handles at most ctx_len={self.ctx_len} tokens per call, got {T}")
        lags = paddle.arange(self.ctx_len - 1, -1, -1, dtype="float32")  # column j holds lag L-1-j
        log_w = paddle.where(lags == 0, first.unsqueeze(1), -decay.unsqueeze(1) * (lags - 1))  # [C, L]
        ek = paddle.exp(k).transpose([0, 2, 1])  # [B, C, T]
        ekv = ek * v.transpose([0, 2, 1])
        num = timex(paddle.exp(log_w), ekv)
        den = timex(paddle.exp(log_w), ek, eps=K_EPS)
        steps = paddle.arange(T, dtype="float32")
        if state is not None:
            scale = paddle.exp(state[:, 2])  # a = aa * e^pp; pp <= 60 since k is clamped, so this cannot overflow
            a0, b0 = (state[:, 0] * scale).unsqueeze(2), (state[:, 1] * scale).unsqueeze(2)
            carried = paddle.exp(-decay.unsqueeze(1) * steps)  # W^t, [C, T]
            num, den = num + carried * a0, den + carried * b0
        y = (num / den).transpose([0, 2, 1])
        # State after the last token: a_T = W^T a_0 + sum_i W^(T-1-i) e^k_i v_i, stored with pp = 0.
        tail = paddle.exp(-decay.unsqueeze(1) * (T - 1 - steps))  # [C, T]
        a, b = (ekv * tail).sum(2), (ek * tail).sum(2)
        if state is not None:
            a = a + paddle.exp(-decay * T) * a0.squeeze(2)
            b = b + paddle.exp(-decay * T) * b0.squeeze(2)
        return y, paddle.stack([a, b, paddle.zeros_like(a)], axis=1)


class RWKV2ChannelMix(nn.Layer):
    """The FFN substitute: sigmoid(R'x') * V'(relu(K'x')^2), K' C -> 4C, V' 4C -> C."""

    def __init__(self, n_embd):
        super().__init__()
        self.time_mix = self.create_parameter([1, 1, n_embd], default_initializer=nn.initializer.Constant(0.0))
        self.key = Linear(n_embd, 4 * n_embd, bias_attr=False)
        self.receptance = Linear(n_embd, n_embd, bias_attr=False)
        self.value = Linear(4 * n_embd, n_embd, bias_attr=False)

    def forward(self, x, shift):
        xx = mix(x, shift, self.time_mix)
        return F.sigmoid(self.receptance(xx)) * self.value(F.relu(self.key(xx)) ** 2)


def deterministic_gpu(x):
    """True for a GPU tensor while Paddle's FLAGS_cudnn_deterministic is set (train.py --deterministic sets it).
    False in a traced program (paddle_lrnn.export), whose values have no place: it keeps the scatter-add."""
    if not paddle.in_dynamic_mode():
        return False
    return x.place.is_gpu_place() and bool(paddle.get_flags(["FLAGS_cudnn_deterministic"])["FLAGS_cudnn_deterministic"])


def add_at_ids(logits, scores, ids, one_hot=False):
    """logits[b, t, ids[b, u]] += scores[b, t, u] for every u. A scatter-add by default; Paddle's GPU scatter-add
    uses atomics, whose order (and so the float sum) varies from run to run, so one_hot=True computes the same sums
    as scores @ one_hot(ids), the original's formulation, in a fixed order (and [B, U, V] more memory)."""
    if one_hot:
        one_hot_ids = F.one_hot(ids, logits.shape[-1]).astype(scores.dtype)  # [B, U, V]
        return logits + paddle.matmul(scores, one_hot_ids).astype(logits.dtype)
    index = ids.unsqueeze(1).expand([ids.shape[0], scores.shape[1], ids.shape[1]])
    return paddle.put_along_axis(logits, index, scores.astype(logits.dtype), axis=2, reduce="add")


def head_qk_logits(q, k, input_ids, logits, ctx_len, memory=None):
    """The copy head: logit[t, id_u] += (q_t . k_u) / head_dim for the last ctx_len tokens u <= t (the current one
    included), divided by head_dim itself as the original does, not by its square root.

    q, k: [B, T, D] projections of the final hidden states; logits [B, T, V]; memory (keys [B, M, D], ids [B, M]) of
    the M < ctx_len tokens before this chunk, or None. Returns (logits with the bonus, memory for the next chunk)."""
    keys, ids = k, input_ids
    if memory is not None:
        keys, ids = paddle.concat([memory[0].astype(k.dtype), k], 1), paddle.concat([memory[1], input_ids], 1)
    T, M = q.shape[1], keys.shape[1] - q.shape[1]
    scores = paddle.matmul(q, keys, transpose_y=True) / q.shape[2]  # [B, T, M + T]
    query_pos = paddle.arange(T).unsqueeze(1) + M
    key_pos = paddle.arange(M + T).unsqueeze(0)
    visible = (key_pos <= query_pos) & (query_pos - key_pos < ctx_len)
    scores = paddle.where(visible, scores, paddle.zeros_like(scores))
    logits = add_at_ids(logits, scores, ids, one_hot=deterministic_gpu(logits))
    keep = ctx_len - 1
    return logits, ((keys[:, -keep:], ids[:, -keep:]) if keep > 0 else None)
