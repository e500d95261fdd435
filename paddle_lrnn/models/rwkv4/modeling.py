"""RWKV4ForCausalLM: BlinkDL's RWKV-4 (RWKV-LM's RWKV-v4 and RWKV-v4neo: the Pile, Raven and World models) with its
exact architecture, initialisation and state-dict names.

Pre-LN blocks with an extra LayerNorm `ln0` on the embedding in block 0: x = ln0(emb); for each block
x = x + att(ln1(x)); x = x + ffn(ln2(x)); then ln_out and the head. The token shifts mix each sub-layer's
normalised input with the previous token's. In the "RWKV-ffnPre" variant block 0 has a channel-mix `ffnPre` where
the time-mix would be. Parameter names are the original's state-dict keys (Linear weights stored [in, out],
Paddle's layout).

State (use_cache=True), a dict of tensors: "wkv" [L, B, 3, dim_att] float32 (each time-mix's WKV state (aa, bb, pp),
as RWKV-LM's RNN runner keeps it; block 0 of "RWKV-ffnPre" keeps an unused empty one), "att_shift" and
"ffn_shift" [L, B, C] in the activations' dtype (layers/linear.py's activation_dtype: float32 on CPU, also for
16-bit or int8 weights; the previous token's normalised input of each sub-layer; att_shift of block 0 of
"RWKV-ffnPre" is ffnPre's).

Decoding one token at a time on CPU without gradients (T == 1, use_cache, paddle.no_grad()), with float32, 16-bit
or int8 weights, runs the whole network as one fused operator (rwkv4_step.py); everything else, and any step with
fused_step = False, runs the layers one by one. Both give the same numbers (within float32 rounding) and the same
state.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn

from ...layers.init import rwkv_init
from ...layers.linear import Embedding, Linear, activation_dtype
from ...layers.norms import LayerNorm
from ...layers.rwkv4 import RWKV4ChannelMix, RWKV4TimeMix
# renamed: in code that paddle.jit.to_static translates, a global `initial_state` would be bound to the method below
from ...ops.wkv import initial_state as initial_wkv_state
from ..fused_step import FusedStepMixin
from ..modeling_utils import CausalLMOutput, PretrainedModel, check_id_range, check_input_ids, check_state
from .configuration import RWKV4Config
from .rwkv4_step import rwkv4_step, weight_names

L2_WRAP = 1e-4  # the original's L2Wrap factor (per position)


class RWKV4Block(nn.Layer):
    def __init__(self, config, layer_id):
        super().__init__()
        C = config.n_embd
        # sub-layers in the order of the original's state dict
        self.ln1, self.ln2 = LayerNorm(C), LayerNorm(C)
        if layer_id == 0:
            self.ln0 = LayerNorm(C)
        if layer_id == 0 and config.variant == "RWKV-ffnPre":
            self.ffnPre = RWKV4ChannelMix(C, config.ffn_width)
        else:
            self.att = RWKV4TimeMix(C, config.attention_width)
        self.ffn = RWKV4ChannelMix(C, config.ffn_width)

    def forward(self, x, att_shift, ffn_shift, wkv_state):
        if hasattr(self, "ln0"):
            x = self.ln0(x)
        a = self.ln1(x)
        if hasattr(self, "att"):
            out, wkv_state = self.att(a, att_shift, wkv_state)
        else:
            out = self.ffnPre(a, att_shift)
        x = x + out
        f = self.ln2(x)
        return x + self.ffn(f, ffn_shift), a[:, -1], f[:, -1], wkv_state


class RWKV4ForCausalLM(FusedStepMixin, PretrainedModel):
    config_class = RWKV4Config

    def __init__(self, config):
        super().__init__(config)
        V, C = config.vocab_size, config.n_embd
        self.emb = Embedding(V, C)
        self.blocks = nn.LayerList([RWKV4Block(config, i) for i in range(config.n_layer)])
        self.ln_out = LayerNorm(C)
        self.head = Linear(C, V, bias_attr=False)
        self.init_weights()

    def _init_weights(self):
        """RWKV-v4/src/model.py's initialisation: RWKV_Init's orthogonal matrices (zeros for the time-mix's key,
        receptance and output and the channel-mix's receptance and value), the "small init" embedding, and per
        layer the decay curve, the bonus zigzag around ln 0.3 and the mixing ramps of RWKV_TimeMix and
        RWKV_ChannelMix."""
        cfg = self.config
        zero = ("att.key", "att.receptance", "att.output", "ffn.receptance", "ffn.value", "ffnPre.receptance",
                "ffnPre.value")
        rwkv_init(self, cfg.vocab_size, cfg.n_embd, dict.fromkeys(zero, 0))
        L, C, A = cfg.n_layer, cfg.n_embd, cfg.attention_width
        ramp = np.arange(C) / C  # channel i: i / C
        h = np.arange(A) / max(A - 1, 1)
        zigzag = np.array([((i + 1) % 3 - 1) * 0.5 for i in range(A)])
        for layer_id, block in enumerate(self.blocks):
            ratio_0_to_1 = layer_id / max(L - 1, 1)  # (the original divides by L - 1: it cannot build one layer)
            ratio_1_to_almost0 = 1.0 - layer_id / L
            if hasattr(block, "att"):
                att = block.att
                _set(att.time_decay, -5 + 8 * h ** (0.7 + 1.3 * ratio_0_to_1))
                _set(att.time_first, math.log(0.3) + zigzag)
                _set(att.time_mix_k, ramp ** ratio_1_to_almost0)
                _set(att.time_mix_v, ramp ** ratio_1_to_almost0 + 0.3 * ratio_0_to_1)
                _set(att.time_mix_r, ramp ** (0.5 * ratio_1_to_almost0))
            for ffn in (getattr(block, "ffnPre", None), block.ffn):  # ffnPre: built with layer_id 0
                if ffn is not None:
                    _set(ffn.time_mix_k, ramp ** ratio_1_to_almost0)
                    _set(ffn.time_mix_r, ramp ** ratio_1_to_almost0)

    def initial_state(self, batch_size):
        """The state of a fresh sequence (zero shifts, empty WKV sums), in the layout forward returns."""
        L, C = self.config.n_layer, self.config.n_embd
        zeros = paddle.zeros([L, batch_size, C], activation_dtype(self.emb.weight))
        wkv = paddle.stack([initial_wkv_state(batch_size, self.config.attention_width)] * L)
        return {"wkv": wkv, "att_shift": zeros, "ffn_shift": zeros}

    def initial_state_shapes(self, batch_size):
        L, C = self.config.n_layer, self.config.n_embd
        return {"wkv": [L, batch_size, 3, self.config.attention_width], "att_shift": [L, batch_size, C],
                "ffn_shift": [L, batch_size, C]}

    def forward(self, input_ids, state=None, use_cache=False):
        """input_ids [B, T] int64; state from an earlier call (None: a fresh sequence). Returns CausalLMOutput with
        logits [B, T, vocab] float32 and, if use_cache, the state after the last token."""
        check_input_ids(input_ids)  # the id range below: the fused step checks it itself, without a sync
        B, T = input_ids.shape
        if state is None:
            state = self.initial_state(B)
        else:
            check_state(state, self.initial_state_shapes(B), B)
        if T == 1 and use_cache and self._fusable(input_ids, state):
            logits, state = rwkv4_step(self._fused_step_weights(), input_ids, state,
                                       ffn_pre=self.config.variant == "RWKV-ffnPre", ln_eps=self.ln_out._epsilon)
            return CausalLMOutput(logits=logits, state=state)
        check_id_range(input_ids, self.config.vocab_size)
        x = self.emb(input_ids)
        wkv, att_shift, ffn_shift = [], [], []
        for i, block in enumerate(self.blocks):
            x, a, f, s = block(x, state["att_shift"][i], state["ffn_shift"][i], state["wkv"][i])
            att_shift.append(a)
            ffn_shift.append(f)
            wkv.append(s)
        logits = self.head(self.ln_out(x)).astype("float32")
        if not use_cache:
            return CausalLMOutput(logits=logits)
        return CausalLMOutput(logits=logits, state={"wkv": paddle.stack(wkv), "att_shift": paddle.stack(att_shift),
                                                    "ffn_shift": paddle.stack(ffn_shift)})

    def fused_weight_names(self):
        return weight_names(self.config.n_layer, self.config.variant == "RWKV-ffnPre")

    @staticmethod
    def loss_penalty(logits):
        """The original's L2Wrap, as a training-loss term: its value is 0 and its gradient is 1e-4 / (B * T) times
        the largest logit at that logit, at every position (it keeps the logits near 0). Written as a loss term
        rather than a gradient hook so that gradient accumulation and fp16 loss scaling treat it as the loss."""
        top = logits.max(axis=-1)
        penalty = (0.5 * L2_WRAP) * paddle.square(top).mean()
        return penalty - penalty.detach()


def _set(param, values):
    param.set_value(paddle.to_tensor(np.asarray(values, dtype="float32").reshape(param.shape)).astype(param.dtype))
