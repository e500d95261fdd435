"""HGRN2ForCausalLM: flash-linear-attention 0.6.0's HGRN2ForCausalLM (HGRN2, Qin et al., COLM 2024) with fla's
parameter names, initialisation and arithmetic, on paddle_lrnn's operators.

    model.embeddings -> L x HGRN2Block -> model.norm (RMSNorm) -> lm_head (or the embedding matrix if tied)
    HGRN2Block (pre-norm):  h = x + attn(attn_norm(x), beta_l);  out = h + mlp(mlp_norm(h))
    attn: layers/hgrn2.py (HGRN2Attention); mlp: layers/mlp.py (GatedMLP, SwiGLU); norms: RMSNorm(eps=norm_eps)

Lower bounds (use_lower_bound): a parameter model.lower_bounds [L, D], zeros at init. Every forward takes
P = softmax over the layer axis (float32), C = cumsum of P over layers and beta_l = C_l - C_0, so beta_0 = 0 (layer 0
is unbounded), beta rises with depth and stays below 1; at init beta_l = l / L. Layer l's forget gate is
beta_l + (1 - beta_l) * sigmoid(f), formed in log space.

Parameters (Paddle layout; Linear weights are [in, out], the transpose of PyTorch's): model.embeddings.weight
[V, D]; model.lower_bounds [L, D]; model.layers.{i}.attn_norm.weight [D]; .attn.q_proj/f_proj.weight [D, H*K];
.attn.i_proj/o_proj.weight [D, D]; .attn.{q,f,i}_conv1d.weight [C, conv_size] (use_short_conv); .attn.g_norm.weight
[D] (elementwise_affine); .mlp_norm.weight [D]; .mlp.gate_proj/up_proj.weight [D, I]; .mlp.down_proj.weight [I, D];
model.norm.weight [D]; lm_head.weight [D, V] unless tie_word_embeddings. Init as fla: Linear, conv and embedding
weights N(0, initializer_range), norm weights 1, lower bounds 0. No dropout (fla has none).

Forward: model(input_ids [B, T], state=None, use_cache=False) -> CausalLMOutput(logits [B, T, V] float32, state).
State (use_cache=True), a dict of float32 tensors stacked over the L layers:
    "recurrent"                    [L, B, H, K, V]  each layer's GLA state, K-first (fla >= 0.5.1 caches the
                                                    transpose [B, H, V, K] per layer)
    "conv_q", "conv_f", "conv_i"   [L, B, C, W]     only with use_short_conv: the last W = conv_size inputs of each
                                                    short convolution, oldest first (fla's conv-cache layout)
Feeding a sequence whole, in chunks or one token at a time (passing the state back) gives the same logits up to
float rounding. A single-token step with use_cache on CPU without gradients, with float32, 16-bit or int8 weights,
runs the whole network as one fused operator (hgrn2_step.py), for every config variant; everything else, and any
step with fused_step = False, runs the layers one by one. fla picks its GLA kernel by length (fused_recurrent
for T <= 64 tokens, else attn_mode); both compute the same recurrence and differ only in rounding, and
paddle_lrnn.ops.gla picks its own algorithm, so the model has no such switch.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...layers.conv import ShortConvolution
from ...layers.hgrn2 import CONV_KEYS, HGRN2Attention
from ...layers.linear import Embedding, Linear
from ...layers.mlp import GatedMLP
from ...layers.norms import RMSNorm
from ..fused_step import FusedStepMixin
from ..modeling_utils import CausalLMOutput, PretrainedModel, check_id_range, check_input_ids, check_state
from .configuration import HGRN2Config
from .hgrn2_step import hgrn2_step, weight_names


class HGRN2Block(nn.Layer):
    def __init__(self, config, layer_idx):
        super().__init__()
        D = config.hidden_size
        self.attn_norm = RMSNorm(D, eps=config.norm_eps)
        self.attn = HGRN2Attention(D, num_heads=config.num_heads, expand_ratio=config.expand_ratio,
                                   use_short_conv=config.use_short_conv, conv_size=config.conv_size,
                                   elementwise_affine=config.elementwise_affine, layer_idx=layer_idx)
        self.mlp_norm = RMSNorm(D, eps=config.norm_eps)
        self.mlp = GatedMLP(D, hidden_ratio=config.hidden_ratio, intermediate_size=config.intermediate_size,
                            hidden_act=config.hidden_act)

    def forward(self, x, lower_bound=None, state=None, use_cache=False):
        h, state = self.attn(self.attn_norm(x), lower_bound=lower_bound, state=state, use_cache=use_cache)
        h = x + h
        return h + self.mlp(self.mlp_norm(h)), state


class HGRN2Model(nn.Layer):
    """The decoder stack (fla's HGRN2Model): embeddings, lower_bounds, layers, norm."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        D, L = config.hidden_size, config.num_hidden_layers
        self.embeddings = Embedding(config.vocab_size, D)
        if config.use_lower_bound:
            self.lower_bounds = self.create_parameter([L, D], default_initializer=nn.initializer.Constant(0.0))
        self.layers = nn.LayerList([HGRN2Block(config, i) for i in range(L)])
        self.norm = RMSNorm(D, eps=config.norm_eps)

    def layer_lower_bounds(self):
        """[L, D] float32: beta_l = cumsum(softmax(lower_bounds, axis=0))_l - (the same)_0, or None."""
        if not self.config.use_lower_bound:
            return None
        p = F.softmax(self.lower_bounds.astype("float32"), axis=0)
        c = paddle.cumsum(p, axis=0)
        return c - c[0:1]

    def forward(self, input_ids, state=None, use_cache=False):
        x = self.embeddings(input_ids)
        betas = self.layer_lower_bounds()
        layer_states = []
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else {k: v[i] for k, v in state.items()}
            x, s = layer(x, lower_bound=None if betas is None or i == 0 else betas[i], state=layer_state,
                         use_cache=use_cache)
            layer_states.append(s)
        x = self.norm(x)
        if not use_cache:
            return x, None
        return x, {k: paddle.stack([s[k] for s in layer_states]) for k in layer_states[0]}


class HGRN2ForCausalLM(FusedStepMixin, PretrainedModel):
    config_class = HGRN2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = HGRN2Model(config)
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, bias_attr=False)
        self._init_weights()

    def _init_weights(self):
        """fla's _init_weights: Linear, conv and embedding weights N(0, initializer_range); norms 1 and lower
        bounds 0 are set by their constructors."""
        normal = nn.initializer.Normal(0.0, self.config.initializer_range)
        for _, layer in self.named_sublayers():
            if isinstance(layer, (nn.Linear, nn.Embedding, ShortConvolution)):
                normal(layer.weight)

    def input_embedding(self):
        return self.model.embeddings

    def fused_weight_names(self):
        return weight_names(self.config)

    def output_embedding(self):
        return self.model.embeddings if self.config.tie_word_embeddings else None

    def initial_state(self, batch_size):
        """The state of a fresh sequence (all zeros), in the layout forward returns."""
        states = [layer.attn.zero_state(batch_size) for layer in self.model.layers]
        return {k: paddle.stack([s[k] for s in states]) for k in states[0]}

    def initial_state_shapes(self, batch_size):
        attn = self.model.layers[0].attn
        L = self.config.num_hidden_layers
        shapes = {"recurrent": [L, batch_size, attn.num_heads, attn.head_k_dim, attn.head_v_dim]}
        if self.config.use_short_conv:
            widths = (attn.forget_dim, attn.forget_dim, attn.hidden_size)
            for key, width in zip(CONV_KEYS, widths):
                shapes[key] = [L, batch_size, width, attn.conv_size]
        return shapes

    def forward(self, input_ids, state=None, use_cache=False):
        """input_ids [B, T] int64; state from an earlier call (None: a fresh sequence). Returns CausalLMOutput with
        logits [B, T, vocab] float32 and, if use_cache, the state after the last token."""
        check_input_ids(input_ids)  # the id range below: the fused step checks it itself, without a sync
        B, T = input_ids.shape
        if state is not None:
            check_state(state, self.initial_state_shapes(B), B)
        if T == 1 and use_cache and self._fusable(input_ids, state or {}):
            logits, state = hgrn2_step(self._fused_step_weights(), input_ids,
                                       self.initial_state(B) if state is None else state, self.config,
                                       self.model.layer_lower_bounds())
            return CausalLMOutput(logits=logits, state=state)
        check_id_range(input_ids, self.config.vocab_size)
        h, new_state = self.model(input_ids, state=state, use_cache=use_cache)
        if self.config.tie_word_embeddings:
            logits = self.model.embeddings.attend(h)
        else:
            logits = self.lm_head(h)
        return CausalLMOutput(logits=logits.astype("float32"), state=new_state)
