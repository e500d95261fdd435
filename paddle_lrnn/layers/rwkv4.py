"""RWKV-4 sub-layers: time-mix (on the WKV operator) and channel-mix, each with its own token-shift mixes for its
projections (time_mix_k, time_mix_v, time_mix_r), which is what separates them from RWKV-v2's.

Every layer takes its input [B, T, C] plus the state it needs from the previous tokens and returns the new state, so
one token at a time, chunks, and whole sequences all give the same result. Every matrix product goes through an
nn.Linear (weights [in, out]), so that a layer computes in whatever dtype its weights have; the WKV recurrence and
its state are float32 whatever that dtype is.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..ops import wkv
from .linear import Linear
from .rwkv2 import mixes


def _parameter(layer, shape, value=0.0):
    return layer.create_parameter(shape, default_initializer=nn.initializer.Constant(value))


class RWKV4TimeMix(nn.Layer):
    """The attention substitute: from the mixes xk, xv, xr of the input and the previous token's,
    k = K xk, v = V xv, r = R xr; out = O(sigmoid(r) * wkv(k, v)), where wkv is the decayed average of the values
    with per-step decay exp(-exp(time_decay)) and the bonus exp(time_first) for the current token (WKV with
    w = exp(time_decay), u = time_first, no epsilon). dim_att: the width of k, v, r (the released models: n_embd)."""

    def __init__(self, n_embd, dim_att=None):
        super().__init__()
        dim_att = dim_att or n_embd
        # parameters in the order of the original's state dict
        self.time_decay = _parameter(self, [dim_att])
        self.time_first = _parameter(self, [dim_att])
        self.time_mix_k = _parameter(self, [1, 1, n_embd], 1.0)
        self.time_mix_v = _parameter(self, [1, 1, n_embd], 1.0)
        self.time_mix_r = _parameter(self, [1, 1, n_embd], 1.0)
        self.key = Linear(n_embd, dim_att, bias_attr=False)
        self.value = Linear(n_embd, dim_att, bias_attr=False)
        self.receptance = Linear(n_embd, dim_att, bias_attr=False)
        self.output = Linear(dim_att, n_embd, bias_attr=False)

    def forward(self, x, shift, wkv_state):
        """x [B, T, C]; shift [B, C] (the previous token's input); wkv_state [B, 3, dim_att] float32 (aa, bb, pp)
        or None. Returns (out [B, T, C], new wkv state)."""
        xk, xv, xr = mixes(x, shift, self.time_mix_k, self.time_mix_v, self.time_mix_r)
        # The recurrence runs in float32 whatever the weights' or AMP's dtype: exp(k) leaves float16's range early.
        k = self.key(xk).astype("float32")
        v = self.value(xv).astype("float32")
        r = self.receptance(xr)
        decay = paddle.exp(self.time_decay.astype("float32"))  # w: the per-step decay is exp(-w)
        y, wkv_state = wkv(decay, self.time_first.astype("float32"), k, v, wkv_state)
        return self.output(F.sigmoid(r) * y.astype(r.dtype)), wkv_state


class RWKV4ChannelMix(nn.Layer):
    """The FFN substitute: sigmoid(R xr) * V(relu(K xk)^2), K: C -> dim_ffn, V: dim_ffn -> C, R: C -> C."""

    def __init__(self, n_embd, dim_ffn=None):
        super().__init__()
        dim_ffn = dim_ffn or 4 * n_embd
        self.time_mix_k = _parameter(self, [1, 1, n_embd], 1.0)
        self.time_mix_r = _parameter(self, [1, 1, n_embd], 1.0)
        self.key = Linear(n_embd, dim_ffn, bias_attr=False)
        self.receptance = Linear(n_embd, n_embd, bias_attr=False)
        self.value = Linear(dim_ffn, n_embd, bias_attr=False)

    def forward(self, x, shift):
        xk, xr = mixes(x, shift, self.time_mix_k, self.time_mix_r)
        return F.sigmoid(self.receptance(xr)) * self.value(paddle.square(F.relu(self.key(xk))))
