"""RWKV2ForCausalLM: BlinkDL's RWKV-v2-RNN (RWKV-LM, March 2022) with its exact architecture and initialisation.

Post-LN blocks (the stream is replaced by its LayerNorm: x = ln1(x); x = x + att(x); x = ln2(x); x = x + ffn(x)),
token shift on the normalised inputs, the copy head added to the logits, and parameter names as in the original's
state dict (Linear weights stored [in, out], Paddle's layout).

State (use_cache=True), a dict of tensors: "wkv" [L, B, 3, C] float32 (time-mix sums), "att_shift" and
"ffn_shift" [L, B, C] (the previous token's normalised input of each sub-layer), "head_keys" [B, M, 256] and
"head_ids" [B, M] (the copy head's memory of the last M < ctx_len tokens).

Decoding one token at a time on CPU without gradients (T == 1, use_cache, paddle.no_grad()), with float32, 16-bit
or int8 weights, runs the whole network as one fused operator (rwkv2_step.py); everything else, and any step with
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
from ...layers.rwkv2 import K_CLAMP, K_EPS, RWKV2ChannelMix, RWKV2TimeMix, head_qk_logits
from ...ops.checks import dims_match
# renamed: in code that paddle.jit.to_static translates, a global `initial_state` would be bound to the method below
from ...ops.wkv import initial_state as initial_wkv_state
from ..fused_step import FusedStepMixin
from ..modeling_utils import CausalLMOutput, PretrainedModel, check_id_range, check_input_ids
from .configuration import RWKV2Config
from .rwkv2_step import rwkv2_step, weight_names


class RWKV2Block(nn.Layer):
    def __init__(self, config, layer_id):
        super().__init__()
        C = config.n_embd
        self.ln1, self.ln2 = LayerNorm(C), LayerNorm(C)
        if layer_id == 0 and config.variant == "RWKV-ffnPre":
            self.ffnPre = RWKV2ChannelMix(C)
        else:
            self.att = RWKV2TimeMix(C, config.ctx_len, config.time_mix_kernel)
        self.ffn = RWKV2ChannelMix(C)

    def forward(self, x, att_shift, ffn_shift, wkv_state):
        x = self.ln1(x)
        if hasattr(self, "att"):
            out, wkv_state = self.att(x, att_shift, wkv_state)
        else:
            out = self.ffnPre(x, att_shift)
        new_att_shift = x[:, -1]
        x = self.ln2(x + out)
        return x + self.ffn(x, ffn_shift), new_att_shift, x[:, -1], wkv_state


class RWKV2ForCausalLM(FusedStepMixin, PretrainedModel):
    config_class = RWKV2Config

    def __init__(self, config):
        super().__init__(config)
        V, C = config.vocab_size, config.n_embd
        self.emb = Embedding(V, C)
        self.blocks = nn.LayerList([RWKV2Block(config, i) for i in range(config.n_layer)])
        self.ln_out = LayerNorm(C)
        self.head = Linear(C, V, bias_attr=False)
        self.head_q = Linear(C, config.head_qk_dim, bias_attr=False)
        self.head_k = Linear(C, config.head_qk_dim, bias_attr=False)
        self.init_weights()

    def _init_weights(self):
        """RWKV_Init and the time-mix/channel-mix constructors of the original, with gains computed from PyTorch's
        [out, in] shapes: orthogonal matrices (zero where the original sets scale_init 0), the "small init"
        embedding, mixing coefficients 0 for the first half of the channels and 1 for the rest, the bonus
        exp(time_first) = 0.3 and the per-layer decay curves."""
        cfg = self.config
        C, L = cfg.n_embd, cfg.n_layer
        rwkv_init(self, cfg.vocab_size, C, {"att.key": 0, "att.receptance": 0, "att.output": 0, "ffn.receptance": 0,
                                            "ffn.value": 0, "ffnPre.receptance": 0, "ffnPre.value": 0, "head_q": 0,
                                            "head_k": 0.1})
        mix = paddle.to_tensor((np.arange(C) >= C / 2).astype("float32").reshape(1, 1, C))
        for layer_id, block in enumerate(self.blocks):
            for sub in ("att", "ffn", "ffnPre"):
                if hasattr(block, sub):
                    getattr(block, sub).time_mix.set_value(mix)
            if hasattr(block, "att"):
                block.att.time_first.set_value(paddle.full([C, 1], math.log(0.3)))
                block.att.time_decay.set_value(paddle.to_tensor(_decay_curve(layer_id, L, C).reshape(C, 1)))

    def initial_state(self, batch_size):
        L, C = self.config.n_layer, self.config.n_embd
        zeros = paddle.zeros([L, batch_size, C], activation_dtype(self.emb.weight))
        return {"wkv": paddle.stack([initial_wkv_state(batch_size, C)] * L), "att_shift": zeros, "ffn_shift": zeros}

    def state_layout(self):
        # the copy-head memory: batch first, and as long as each row's history (up to ctx_len - 1)
        return {"wkv": (1, None), "att_shift": (1, None), "ffn_shift": (1, None), "head_keys": (0, 1),
                "head_ids": (0, 1)}

    def forward(self, input_ids, state=None, use_cache=False):
        """input_ids [B, T] int64; state from an earlier call (None: a fresh sequence). Returns CausalLMOutput with
        logits [B, T, vocab] float32 and, if use_cache, the state after the last token."""
        check_input_ids(input_ids)  # the id range below: the fused step checks it itself, without a sync
        B, T = input_ids.shape
        if state is None:
            state = self.initial_state(B)
        elif not dims_match([state["wkv"].shape[1]], [B]):
            raise ValueError(f"state is for batch size {state['wkv'].shape[1]}, input_ids has batch size {B}")
        if T == 1 and use_cache and self._fusable(input_ids, state):
            logits, state = rwkv2_step(self._fused_step_weights(), input_ids, state, ctx_len=self.config.ctx_len,
                                       ffn_pre=self.config.variant == "RWKV-ffnPre", k_clamp=K_CLAMP, eps=K_EPS,
                                       ln_eps=self.ln_out._epsilon)
            return CausalLMOutput(logits=logits, state=state)
        check_id_range(input_ids, self.config.vocab_size)
        x = self.emb(input_ids)
        wkv, att_shift, ffn_shift = [], [], []
        for i, block in enumerate(self.blocks):
            x, a, f, s = block(x, state["att_shift"][i], state["ffn_shift"][i], state["wkv"][i])
            att_shift.append(a)
            ffn_shift.append(f)
            wkv.append(s)
        x = self.ln_out(x)
        logits = self.head(x).astype("float32")
        memory = (state["head_keys"], state["head_ids"]) if "head_keys" in state else None
        logits, memory = head_qk_logits(self.head_q(x), self.head_k(x), input_ids, logits, self.config.ctx_len,
                                        memory)
        if not use_cache:
            return CausalLMOutput(logits=logits)
        new_state = {"wkv": paddle.stack(wkv), "att_shift": paddle.stack(att_shift),
                     "ffn_shift": paddle.stack(ffn_shift)}
        if memory is not None:
            new_state["head_keys"], new_state["head_ids"] = memory
        return CausalLMOutput(logits=logits, state=new_state)

    def fused_weight_names(self):
        return weight_names(self.config.n_layer, self.config.variant == "RWKV-ffnPre")


def _decay_curve(layer_id, n_layer, n_embd):
    """time_decay of the original's RWKV_TimeMix for one layer (first_sa_layer_id = 1): ln(f1 * f2^(7h/(C-1))).
    The original divides by n_layer - 2; for fewer than 3 layers we use 1 there (the original cannot build them)."""
    ratio = (layer_id - 1) / max(n_layer - 2, 1)
    f1 = 3.0 + ratio * (1.2 - 3.0)
    f2 = 0.65 + ratio * (0.4 - 0.65)
    if layer_id == 1:
        f1 += 0.5
    if layer_id == n_layer - 2:
        f2 = 0.4
    if layer_id == n_layer - 1:
        f2 = 0.37
    h = np.arange(n_embd) / max(n_embd - 1, 1)
    return np.log(f1 * f2 ** (7 * h)).astype("float32")

