"""The layers of mikayahlevi/mru-lm's hybrid network (model.py at c45d36d): the Matrix Recurrent Unit, causal
softmax attention with xPos, and the GELU MLP, with the original's parameter names and initialisation.

MRU (class MRU; the original's current "LDU" step matrix). Per token x [E], with h heads of o x o matrices
(state_size = h * o^2) and c = E / (o * h) readout columns per head:

    a   = dropout(state_matrices_up x)                 Linear E -> state_size, no bias, zero init
    A   = a[head] read row-major as o x o               (per head)
    M   = (L + D)(U + D)                                L / U: strictly lower / upper part of A,
                                                        D = diag(sqrt(exp(A_ii - mean_j A_jj))), so det M = 1
    S_t = S_{t-1} M_t                                   new matrix on the RIGHT, S_0 = I (or the previous state)
    y   = dropout(mru_out(flatten(S_t[head] @ state_matrices_down[head])))   [h, o, c] flattened row-major

The scan runs in float32 whatever the layer's dtype (float64 stays float64), as the original casts the stacked
matrices with autocast disabled and casts the prefix products back. The original passes a previous state by
prepending it as an extra first matrix of the scan and dropping the first output; that is the product
S_prev M_1 ... M_t, which is what paddle_lrnn.ops.mru_scan computes from an initial state. The state returned
(the prefix product after the last token) is kept in float32 (float64 for float64 runs); the original casts it
back to the incoming dtype, which only matters under fp16/bf16 autocast.

Attention (class Attention): query_layer / key_layer / value_layer (Linear, no bias, N(0, 0.02^2)), xPos on
queries and keys, causal scaled-dot-product attention (scale 1/sqrt(key head size), dropout on the probabilities
while training), attention_down (Linear value_size -> E, N(0, (0.02/sqrt(n_layers))^2)), dropout.

xPos (XPos; the original's `xpos` class, read from its model.py for the constants, which the project's reference
leaves open): with k = key head size (even), i = 1 .. k/2 and every value repeated for the two members of a pair,
    theta_i = (1/10000)^(2i/k)            zeta_i = (2i/(k/2) + 0.4k) / (1 + 0.4k)
and for absolute position p (0-based) the scaled offset u = (p - floor(L/2)) / 512, L = max_sequence_length:
    c = cos(u theta), s = sin(u theta), t = zeta^u, invt = 1/t
    q' = (q c + rot(q) s) t,  k' = (k c + rot(k) s) invt,  rot(x) = (-x_1, x_0, -x_3, x_2, ...)
so q'.k' depends only on the distance between the positions (a rotation by (p_q - p_k) theta / 512 and a decay
zeta^((p_q - p_k)/512)). The tables for p < L are computed once in float32 as the original computes them (the
angle and zeta in float32; cos, sin and the power evaluated in float64 and rounded). Against the original's
buffers (torch on CPU) s, t and invt are bit-identical; torch's cos (Intel MKL's vsCos) is not correctly rounded
and differs from ours by one unit in the last place in about 4 % of the entries of c.

Key/value cache. Keys are cached after xPos (as the original caches them), with the number of tokens seen. The
original preallocates max_sequence_length positions and cannot go further; here a query attends to at most the
last max_sequence_length positions (itself included), in every mode, so a sequence may run past that length: the
cache keeps the last max_sequence_length keys and values, and positions past the table are computed with the
same formula. Up to max_sequence_length tokens this is exactly the original's causal attention.

MLP: Linear(E -> 4E) N(0, 0.02^2), exact (erf) GELU, Linear(4E -> E) N(0, (0.02/sqrt(n_layers))^2), dropout;
parameters mlp.0.weight and mlp.2.weight as the original's nn.Sequential names them.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..ops.mru_scan import mru_scan
from .linear import Linear, weight_only

XPOS_THETA_BASE = 10000
XPOS_SCALE_BASE = 512


def mru_dims(embedding_size, n_state_heads, state_size):
    """(o, c) for an MRU: the matrix order o = sqrt(state_size / n_state_heads) and the readout columns per head
    c = embedding_size / (o * n_state_heads). Raises ValueError with the original's checks, plus the one the
    readout needs (embedding_size divisible by o * n_state_heads), which the original does not make."""
    if not (_is_int(n_state_heads) and n_state_heads > 0):
        raise ValueError(f"n_state_heads must be a positive integer, got {n_state_heads!r}")
    if not (_is_int(state_size) and state_size > 0):
        raise ValueError(f"state_size must be a positive integer, got {state_size!r}")
    if state_size % n_state_heads:
        raise ValueError(f"state_size {state_size} must be divisible by n_state_heads {n_state_heads}")
    head = state_size // n_state_heads
    o = math.isqrt(head)
    if o * o != head:
        raise ValueError(f"the state head size state_size / n_state_heads = {head} must be a perfect square (each "
                         f"head's state is an o x o matrix)")
    if embedding_size % o:
        raise ValueError(f"embedding_size {embedding_size} must be divisible by the state head order {o}")
    if embedding_size % (o * n_state_heads):
        raise ValueError(f"embedding_size {embedding_size} must be divisible by state head order x n_state_heads = "
                         f"{o} x {n_state_heads} = {o * n_state_heads} (the readout splits the embedding into "
                         f"{n_state_heads} heads of {o} rows)")
    return o, embedding_size // (o * n_state_heads)


def ldu_step_matrices(a, order):
    """The original's step matrices from a [..., order * order] (row-major): (L + D)(U + D) with L, U the strictly
    lower and upper parts and D = diag(sqrt(exp(diag - mean(diag)))); [..., order, order], a's dtype."""
    A = a.reshape([*a.shape[:-1], order, order])
    diag = paddle.diagonal(A, axis1=-2, axis2=-1)
    d = paddle.sqrt(paddle.exp(diag - diag.mean(axis=-1, keepdim=True)))
    # D = diag(d) as a broadcast product with the identity: paddle.diag_embed passes no gradient back (Paddle 3.3)
    D = paddle.eye(order, dtype=A.dtype) * d.unsqueeze(-2)
    return paddle.matmul(paddle.tril(A, -1) + D, paddle.triu(A, 1) + D)


class MRU(nn.Layer):
    """MRU(embedding_size, n_state_heads, state_size, dropout_rate=0.0, n_layers=1); n_layers is the length of the
    model's layer list (it scales mru_out's init). forward(x [B, T, E], state=None [B, h, o, o])
    -> (y [B, T, E], state after the last token [B, h, o, o], float32 or float64)."""

    def __init__(self, embedding_size, n_state_heads, state_size, dropout_rate=0.0, n_layers=1):
        super().__init__()
        self.embedding_size, self.n_state_heads, self.state_size = int(embedding_size), int(n_state_heads), \
            int(state_size)
        self.order, self.chunk = mru_dims(self.embedding_size, self.n_state_heads, self.state_size)
        E, h, o, c = self.embedding_size, self.n_state_heads, self.order, self.chunk
        # parameter order as the original's state dict: the raw Parameter first, then the Linear layers
        self.state_matrices_down = self.create_parameter(
            [h, o, c], default_initializer=nn.initializer.Normal(0.0, 0.02 * math.sqrt(o)))
        self.state_matrices_up = Linear(E, self.state_size, bias_attr=False,
                                           weight_attr=nn.initializer.Constant(0.0))
        self.mru_out = Linear(E, E, bias_attr=False,
                                 weight_attr=nn.initializer.Normal(0.0, 0.02 / math.sqrt(n_layers)))
        self.dropout = nn.Dropout(dropout_rate)

    def state_shape(self, batch_size):
        return [batch_size, self.n_state_heads, self.order, self.order]

    def forward(self, x, state=None):
        B, T, _ = x.shape
        h, o = self.n_state_heads, self.order
        # state_matrices_up(x), produced directly in the scan's layout [B, h, T, o*o] (a strided copy of
        # [B, T, h, o, o] costs Paddle on CPU about as much as the rest of the layer); a 16-bit or int8 weight
        # through its own product, then that copy
        if weight_only(self.state_matrices_up.weight):
            a = self.state_matrices_up(x).reshape([B, T, h, o * o]).transpose([0, 2, 1, 3])
        else:
            w = self.state_matrices_up.weight.reshape([self.embedding_size, h, o * o])
            a = paddle.einsum("bte,ehk->bhtk", x, w)
        a = self.dropout(a)
        m = ldu_step_matrices(a, o)  # [B, h, T, o, o]
        dtype = m.dtype
        scan_dtype = dtype if dtype in (paddle.float32, paddle.float64) else paddle.float32
        m = m.astype(scan_dtype)
        if paddle.in_dynamic_mode() and not m.is_contiguous():  # a static graph has no strides
            m = m.contiguous()
        prefix, new_state = mru_scan(m, state)
        # readout per head, back to [B, T, h, o, c] (an einsum: Paddle's broadcasting matmul cannot differentiate
        # a [h, o, c] right operand against a 5-D left one)
        y = paddle.einsum("bhtij,hjk->bthik", prefix.astype(dtype), self.state_matrices_down.astype(dtype))
        return self.dropout(self.mru_out(y.reshape([B, T, self.embedding_size]))), new_state


class MLP(nn.Layer):
    """MLP(embedding_size, dropout_rate=0.0, n_layers=1): mlp = Sequential(Linear(E, 4E), GELU (exact),
    Linear(4E, E), Dropout), no biases."""

    def __init__(self, embedding_size, dropout_rate=0.0, n_layers=1):
        super().__init__()
        E = int(embedding_size)
        self.mlp = nn.Sequential(
            Linear(E, 4 * E, bias_attr=False, weight_attr=nn.initializer.Normal(0.0, 0.02)),
            nn.GELU(approximate=False),
            Linear(4 * E, E, bias_attr=False, weight_attr=nn.initializer.Normal(0.0, 0.02 / math.sqrt(n_layers))),
            nn.Dropout(dropout_rate))

    def forward(self, x):
        return self.mlp(x)


def xpos_frequencies(key_head_size):
    """(theta, zeta), float32 numpy [key_head_size]: the per-channel rotation frequency and decay base of xPos."""
    k = int(key_head_size)
    if k % 2:
        raise ValueError(f"the key head size key_size / n_attn_heads = {k} must be even for the xPos position "
                         f"embedding")
    f32 = np.float32
    pairs = np.arange(2, k + 2, 2, dtype=f32)
    theta = np.repeat(np.power(f32(1.0 / XPOS_THETA_BASE), pairs / f32(k)), 2)
    alpha = 0.4 * k
    zeta = np.repeat((pairs / f32(k / 2) + f32(alpha)) / f32(1 + alpha), 2)
    return theta, zeta


def xpos_tables(key_head_size, start, end, max_sequence_length):
    """(c, s, t, invt), each float32 numpy [end - start, 1, key_head_size], for absolute positions start..end-1
    (rows 0..L-1 are the original's xPos buffers for L = max_sequence_length; see the module docstring)."""
    f32 = np.float32
    theta, zeta = xpos_frequencies(key_head_size)
    half = max_sequence_length // 2
    u = (np.arange(start, end, dtype=np.int64) - half).astype(f32).reshape(-1, 1, 1) / f32(XPOS_SCALE_BASE)
    angle = (u * theta.reshape(1, 1, -1)).astype(np.float64)  # the product in float32, as the original
    c = np.cos(angle).astype(f32)
    s = np.sin(angle).astype(f32)
    t = np.power(zeta.reshape(1, 1, -1).astype(np.float64), u.astype(np.float64)).astype(f32)
    return c, s, t, (f32(1.0) / t).astype(f32)


def rotate_every_two(x):
    """(-x_1, x_0, -x_3, x_2, ...) along the last axis."""
    pairs = x.reshape([*x.shape[:-1], x.shape[-1] // 2, 2])
    return paddle.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)


class XPos(nn.Layer):
    """xPos for queries and keys [B, T, H, key_head_size] at absolute positions start .. start+T-1. The tables of the
    first max_sequence_length positions are buffers (not saved: they are recomputed from the sizes); rows past them
    are computed on demand, by Paddle operators (so that a program traced by paddle.jit.to_static, where start and
    T are tensors, computes them too: paddle_lrnn.export)."""

    TABLES = ("c", "s", "t", "invt")

    def __init__(self, key_head_size, max_sequence_length):
        super().__init__()
        self.key_head_size, self.max_sequence_length = int(key_head_size), int(max_sequence_length)
        tables = xpos_tables(self.key_head_size, 0, self.max_sequence_length, self.max_sequence_length)
        for name, table in zip(self.TABLES, tables):
            self.register_buffer(name, paddle.to_tensor(table), persistable=False)
        theta, zeta = xpos_frequencies(self.key_head_size)
        self.register_buffer("theta", paddle.to_tensor(theta.reshape(1, 1, -1)), persistable=False)
        self.register_buffer("zeta", paddle.to_tensor(zeta.reshape(1, 1, -1).astype(np.float64)), persistable=False)

    def rows(self, start, T, dtype):
        """[c, s, t, invt], each [T, 1, key_head_size] in dtype, for positions start .. start+T-1. start is an int,
        or an int64 tensor [1] (a traced program's state position); T an int, or a tensor while tracing."""
        if isinstance(start, int) and isinstance(T, int) and start + T <= self.max_sequence_length:
            return [getattr(self, n)[start:start + T].astype(dtype) for n in self.TABLES]
        positions = paddle.arange(T, dtype="int64") + start
        # the buffers' rows where there are some (the same numbers everywhere), the formula past them
        in_table = (positions < self.max_sequence_length).reshape([-1, 1, 1])
        index = paddle.clip(positions, max=self.max_sequence_length - 1)
        computed = self._computed_rows(positions)
        return [paddle.where(in_table, paddle.gather(getattr(self, n), index), x).astype(dtype)
                for n, x in zip(self.TABLES, computed)]

    def _computed_rows(self, positions):
        """xpos_tables' arithmetic in Paddle operators, for int64 positions [T]."""
        u = (positions - self.max_sequence_length // 2).astype("float32").reshape([-1, 1, 1]) / XPOS_SCALE_BASE
        angle = (u * self.theta).astype("float64")  # the product in float32, as xpos_tables
        t = paddle.pow(self.zeta, u.astype("float64")).astype("float32")
        return paddle.cos(angle).astype("float32"), paddle.sin(angle).astype("float32"), t, 1.0 / t

    def forward(self, q, k, start=0):
        c, s, t, invt = self.rows(start, q.shape[1], q.dtype)
        q = (q * c + rotate_every_two(q) * s) * t
        k = (k * c + rotate_every_two(k) * s) * invt
        return q, k


class Attention(nn.Layer):
    """Attention(embedding_size, n_attn_heads, key_size, value_size, dropout_rate=0.0, n_layers=1, window=1024).
    forward(x [B, T, E], xpos, start=0, cache=None, use_cache=False) -> (y [B, T, E], cache or None), cache =
    (keys [B, S, H, key head size] after xPos, values [B, S, H, value head size]) of the last S <= window positions
    before `start` (S = min(start, window))."""

    def __init__(self, embedding_size, n_attn_heads, key_size, value_size, dropout_rate=0.0, n_layers=1,
                 window=1024):
        super().__init__()
        if key_size % n_attn_heads:
            raise ValueError(f"key_size {key_size} must be divisible by n_attn_heads {n_attn_heads}")
        if value_size % n_attn_heads:
            raise ValueError(f"value_size {value_size} must be divisible by n_attn_heads {n_attn_heads}")
        E = int(embedding_size)
        self.n_heads, self.key_head_size = int(n_attn_heads), key_size // n_attn_heads
        self.value_head_size, self.window, self.dropout_rate = value_size // n_attn_heads, int(window), dropout_rate
        normal = nn.initializer.Normal(0.0, 0.02)
        self.query_layer = Linear(E, key_size, bias_attr=False, weight_attr=normal)
        self.key_layer = Linear(E, key_size, bias_attr=False, weight_attr=normal)
        self.value_layer = Linear(E, value_size, bias_attr=False, weight_attr=normal)
        self.attention_down = Linear(value_size, E, bias_attr=False,
                                        weight_attr=nn.initializer.Normal(0.0, 0.02 / math.sqrt(n_layers)))
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x, xpos, start=0, cache=None, use_cache=False):
        B, T, _ = x.shape
        H, dk, dv = self.n_heads, self.key_head_size, self.value_head_size
        q = self.query_layer(x).reshape([B, T, H, dk])
        k = self.key_layer(x).reshape([B, T, H, dk])
        v = self.value_layer(x).reshape([B, T, H, dv])
        q, k = xpos(q, k, start)
        if cache is not None:
            k = paddle.concat([cache[0].astype(k.dtype), k], axis=1)
            v = paddle.concat([cache[1].astype(v.dtype), v], axis=1)
        S = k.shape[1]
        scores = paddle.matmul(q.transpose([0, 2, 1, 3]), k.transpose([0, 2, 3, 1])).astype("float32")
        scores = scores * (1.0 / math.sqrt(dk))
        # query i is at position start + i, key j at start + T - S + j; a query sees the keys at most `window - 1`
        # positions back, itself included
        offset = paddle.arange(T, dtype="int64").unsqueeze(1) + (S - T) - paddle.arange(S, dtype="int64")
        allowed = (offset >= 0) & (offset < self.window)
        scores = paddle.where(allowed, scores, paddle.full_like(scores, float("-inf")))
        probs = self.dropout(F.softmax(scores, axis=-1)).astype(v.dtype)
        out = paddle.matmul(probs, v.transpose([0, 2, 1, 3]))  # [B, H, T, dv]
        out = self.dropout(self.attention_down(out.transpose([0, 2, 1, 3]).reshape([B, T, H * dv])))
        if not use_cache:
            return out, None
        return out, (k[:, -self.window:], v[:, -self.window:])


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
