"""HGRN2's token mixer (Qin et al., "HGRN2: Gated Linear RNNs with State Expansion", COLM 2024), computed as
flash-linear-attention 0.6.0's HGRN2Attention computes it, with the same parameter names.

Per head (H heads, K = expand_ratio forget/"key" channels, V = hidden_size / H input/"value" channels):

    q = swish(q_proj x)                       output gate                        [.., H, K]
    g = logsigmoid(f_proj x)                  log forget gate, <= 0              [.., H, K]
        g = log(beta + (1 - beta) * exp(g))   layers after the first, with the per-layer lower bound beta in (0, 1),
                                              formed in log space: logaddexp(log beta, log1p(-beta) + g)
    k = 1 - exp(g) = -expm1(g)                input gate (formed without cancellation near g = 0)
    v = i_proj x                              input, no activation                [.., H, V]
    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = K^-0.5 q_t S_t               (paddle_lrnn.ops.gla)
    out = o_proj(RMSNorm(o over all H * V channels, weight g_norm.weight, eps 1e-5))

Optionally (use_short_conv) q_proj, f_proj and i_proj outputs first go through causal depthwise convolutions
q_conv1d, f_conv1d, i_conv1d of conv_size taps (no bias, no activation) before the gates above.

fla quirk kept on purpose: g_norm is built with the config's norm_eps (1e-6 by default) but fla 0.6.0 applies it
through rms_norm_linear without passing eps, so the effective eps is that function's default, 1e-5. Matching fla's
logits needs 1e-5 (with 1e-6 the fixture's logits move by up to 2.5e-3); G_NORM_EPS holds it.

fla switches kernels by length (fused_recurrent for T <= 64, else the configured attn_mode, 'chunk'); both compute
the same recurrence and differ only in floating-point rounding. paddle_lrnn.ops.gla picks its own algorithm, so the
mode is not a switch here.

The recurrence (gates, k, and the gla operator) runs in float32 whatever the input dtype; its state is float32.
State of one layer (a dict of tensors): "recurrent" [B, H, K, V] float32, K-first as paddle_lrnn.ops.gla keeps it
(fla >= 0.5.1 caches the transpose, [B, H, V, K]); with use_short_conv also "conv_q", "conv_f", "conv_i" [B, C, W],
the last W inputs of each convolution (fla's conv-cache layout, see layers/conv.py).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from ..ops.gla import gla
from .conv import ShortConvolution
from .linear import Linear
from .norms import RMSNorm, rms_norm

G_NORM_EPS = 1e-5  # fla 0.6.0's rms_norm_linear default, used whatever norm_eps says (see the module docstring)
CONV_KEYS = ("conv_q", "conv_f", "conv_i")


def resolve_heads(hidden_size, num_heads=None, expand_ratio=128):
    """(num_heads, expand_ratio) as fla's HGRN2Attention resolves them: a given expand_ratio wins and sets
    num_heads = hidden_size // expand_ratio (a given num_heads is then ignored); with expand_ratio None,
    expand_ratio = hidden_size // num_heads. Raises ValueError when neither is given or the result is unusable."""
    if expand_ratio is not None:
        expand_ratio = int(expand_ratio)
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be a positive integer, got {expand_ratio}")
        num_heads = hidden_size // expand_ratio
        if num_heads < 1:
            raise ValueError(f"expand_ratio {expand_ratio} is larger than hidden_size {hidden_size}: no head fits "
                             f"(num_heads = hidden_size // expand_ratio = 0)")
    elif num_heads is not None:
        num_heads = int(num_heads)
        if num_heads < 1:
            raise ValueError(f"num_heads must be a positive integer, got {num_heads}")
        expand_ratio = hidden_size // num_heads
    else:
        raise ValueError("one of expand_ratio or num_heads must be given")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads} (resolved from "
                         f"expand_ratio {expand_ratio} as hidden_size // expand_ratio)")
    if expand_ratio < 1:
        raise ValueError(f"num_heads {num_heads} is larger than hidden_size {hidden_size}")
    return num_heads, expand_ratio


class _LogAddExp(PyLayer):
    @staticmethod
    def forward(ctx, a, b):
        m = paddle.maximum(a, b)
        out = m + paddle.log1p(paddle.exp(paddle.minimum(a, b) - m))
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensor()
        return grad * paddle.exp(a - out), grad * paddle.exp(b - out)


def logaddexp(a, b):
    """log(exp(a) + exp(b)) elementwise, with the exact gradients exp(a - out), exp(b - out): 0 for a side at -inf
    (paddle.logaddexp's gradient is NaN there, e.g. for log(beta) of a zero lower bound). a and b have one shape."""
    return _LogAddExp.apply(a, b)


class _LogSigmoid(PyLayer):
    @staticmethod
    def forward(ctx, x):
        out = paddle.minimum(x, paddle.zeros_like(x)) - paddle.log1p(paddle.exp(-paddle.abs(x)))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensor()
        return grad * -paddle.expm1(out)  # d/dx log(sigmoid(x)) = sigmoid(-x) = 1 - exp(out)


def log_sigmoid(x):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), accurate where sigmoid(x) is near 1 (as torch's logsigmoid):
    Paddle's F.log_sigmoid forms log(1 + exp(-x)) and gives -3.6e-7 instead of -3.1e-7 at x = 15 and 0 from x ~ 17
    on, which would turn 1 - exp(g) for gates near 1 into noise."""
    return _LogSigmoid.apply(x)


def bounded_log_forget_gate(f, lower_bound=None):
    """log(beta + (1 - beta) * sigmoid(f)) in float32, in log space; plain logsigmoid(f) for lower_bound None.
    lower_bound: [C] (broadcast over the leading axes of f [..., C]), each in [0, 1)."""
    g = log_sigmoid(f.astype("float32"))
    if lower_bound is None:
        return g
    beta = lower_bound.astype("float32")
    return logaddexp(paddle.expand(paddle.log(beta), g.shape), paddle.log1p(-beta) + g)


class HGRN2Attention(nn.Layer):
    """HGRN2Attention(hidden_size, num_heads=None, expand_ratio=128, use_short_conv=False, conv_size=4,
    elementwise_affine=True, layer_idx=0). forward(x [B, T, D], lower_bound=None, state=None, use_cache=False)
    -> (out [B, T, D], the layer's state after the last token if use_cache else None). A lower bound is applied
    only for layer_idx > 0 (fla's rule; the model's bound of layer 0 is 0 anyway)."""

    def __init__(self, hidden_size, num_heads=None, expand_ratio=128, use_short_conv=False, conv_size=4,
                 elementwise_affine=True, layer_idx=0):
        super().__init__()
        self.hidden_size = D = int(hidden_size)
        self.num_heads, self.expand_ratio = resolve_heads(D, num_heads, expand_ratio)
        self.head_k_dim = self.expand_ratio  # forget/"key" channels per head
        self.head_v_dim = D // self.num_heads  # input/"value" channels per head
        self.forget_dim = self.num_heads * self.expand_ratio
        self.layer_idx = int(layer_idx)
        self.use_short_conv, self.conv_size = bool(use_short_conv), int(conv_size)
        self.q_proj = Linear(D, self.forget_dim, bias_attr=False)
        self.f_proj = Linear(D, self.forget_dim, bias_attr=False)
        self.i_proj = Linear(D, D, bias_attr=False)
        if self.use_short_conv:
            self.q_conv1d = ShortConvolution(self.forget_dim, self.conv_size)
            self.f_conv1d = ShortConvolution(self.forget_dim, self.conv_size)
            self.i_conv1d = ShortConvolution(D, self.conv_size)
        self.g_norm = RMSNorm(D, eps=G_NORM_EPS, elementwise_affine=elementwise_affine)
        self.o_proj = Linear(D, D, bias_attr=False)

    def zero_state(self, batch_size):
        state = {"recurrent": paddle.zeros([batch_size, self.num_heads, self.head_k_dim, self.head_v_dim], "float32")}
        if self.use_short_conv:
            for key, conv in zip(CONV_KEYS, self._convs()):
                state[key] = conv.zero_cache(batch_size)
        return state

    def _convs(self):
        return (self.q_conv1d, self.f_conv1d, self.i_conv1d)

    def forward(self, x, lower_bound=None, state=None, use_cache=False):
        B, T, _ = x.shape
        H, K, V = self.num_heads, self.head_k_dim, self.head_v_dim
        q, f, i = self.q_proj(x), self.f_proj(x), self.i_proj(x)
        new_state = {}
        if self.use_short_conv:
            outs = []
            for key, conv, h in zip(CONV_KEYS, self._convs(), (q, f, i)):
                y, cache = conv(h, None if state is None else state.get(key), output_cache=use_cache)
                outs.append(y)
                new_state[key] = cache
            q, f, i = outs
        q = F.silu(q.astype("float32"))
        g = bounded_log_forget_gate(f, lower_bound if self.layer_idx > 0 else None)
        k = -paddle.expm1(g)
        o, recurrent = gla(q.reshape([B, T, H, K]), k.reshape([B, T, H, K]),
                           i.astype("float32").reshape([B, T, H, V]), g.reshape([B, T, H, K]),
                           None if state is None else state["recurrent"])
        o = rms_norm(o.reshape([B, T, H * V]), self.g_norm.weight, G_NORM_EPS).astype(x.dtype)
        out = self.o_proj(o)
        if not use_cache:
            return out, None
        new_state["recurrent"] = recurrent
        return out, new_state
