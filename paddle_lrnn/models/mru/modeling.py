"""MRUForCausalLM: mikayahlevi/mru-lm's `hybrid_lm_network` (model.py at c45d36d), a GPT-2-like pre-LN network
whose layers are Matrix Recurrent Units, MLPs and (optionally) xPos softmax attention, with the original's parameter
names, initialisation and arithmetic.

    x = dropout(wte(ids))
    for each entry i of config.layers:  x = x + layers[i](pre_lns[i](x))      (LayerNorm, no bias, eps 1e-5)
    logits = final_ln(x) @ wte.weight^T                                        (lm_head tied to wte)

Layers: paddle_lrnn/layers/mru.py (MRU, MLP, Attention, XPos). Parameters (Paddle layout, Linear weights [in, out]),
in the original's state-dict order: layers.{i}.state_matrices_down [h, o, c], layers.{i}.state_matrices_up.weight
[E, state_size], layers.{i}.mru_out.weight [E, E] (mru); layers.{i}.mlp.0.weight [E, 4E], layers.{i}.mlp.2.weight
[4E, E] (mlp); layers.{i}.query_layer/key_layer.weight [E, key_size], value_layer.weight [E, value_size],
attention_down.weight [value_size, E] (attn); pre_lns.{i}.weight [E]; wte.weight [V, E]; final_ln.weight [E]. The
original's xPos buffers (position_embedding.c/s/t/invt) are recomputed from the config, not stored.
Init as the original: wte N(0, 0.02^2), LayerNorm weights 1, state_matrices_up 0, state_matrices_down
N(0, (0.02 sqrt(o))^2), mlp.0 / q / k / v N(0, 0.02^2), mru_out / mlp.2 / attention_down N(0, (0.02/sqrt(n))^2)
with n = len(config.layers).

Forward: model(input_ids [B, T], state=None, use_cache=False) -> CausalLMOutput(logits [B, T, V] float32, state).
State (use_cache=True), a dict of tensors:
    "mru"             [n_mru, B, h, o, o]  float32: each MRU layer's prefix product after the last token, in layer
                                           order (the original's list of states, stacked)
    "attn_keys"       [n_attn, B, S, H, key head size]    only with attention layers: the last S <= max_sequence_length
    "attn_values"     [n_attn, B, S, H, value head size]  keys (after xPos) and values of each attention layer
    "attn_position"   [1] int64                           tokens seen so far (the next token's position)
Feeding a sequence whole, in chunks or one token at a time (passing the state back) gives the same logits up to
float rounding.
"""
import math

import paddle
import paddle.nn as nn

from ...layers.linear import Embedding, activation_dtype
from ...layers.mru import MLP, MRU, Attention, XPos
from ...layers.norms import LayerNorm
from ..modeling_utils import CausalLMOutput, PretrainedModel, check_input_ids, check_state
from .configuration import MRUConfig

LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which the original uses


class MRUForCausalLM(PretrainedModel):
    config_class = MRUConfig

    def __init__(self, config):
        super().__init__(config)
        E, n = config.embedding_size, config.n_layers
        layers = []
        for kind in config.layers:
            if kind == "mru":
                layers.append(MRU(E, config.n_state_heads, config.state_size, config.dropout_rate, n))
            elif kind == "mlp":
                layers.append(MLP(E, config.dropout_rate, n))
            else:
                layers.append(Attention(E, config.n_attn_heads, config.key_size, config.value_size,
                                        config.dropout_rate, n, window=config.max_sequence_length))
        # registration order = the original's state-dict order (layers, pre_lns, position_embedding, wte, final_ln)
        self.layers = nn.LayerList(layers)
        self.pre_lns = nn.LayerList([_layer_norm(E) for _ in config.layers])
        self.position_embedding = XPos(config.key_head_size, config.max_sequence_length)
        self.wte = Embedding(config.vocab_size, E, weight_attr=nn.initializer.Normal(0.0, 0.02))
        self.final_ln = _layer_norm(E)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.mru_indices = [i for i, k in enumerate(config.layers) if k == "mru"]
        self.attn_indices = [i for i, k in enumerate(config.layers) if k == "attn"]

    def output_embedding(self):
        return self.wte

    # ------------------------------------------------------------------------------------------------- state
    def initial_state_shapes(self, batch_size, cached=0):
        """{key: shape} of the state after `cached` tokens (the attention cache holds min(cached, window)); cached
        None (a traced program's state, whose position is a tensor) leaves the cache length open (-1)."""
        shapes = {}
        if self.mru_indices:
            shapes["mru"] = [len(self.mru_indices), *self.layers[self.mru_indices[0]].state_shape(batch_size)]
        if self.attn_indices:
            S = -1 if cached is None else min(cached, self.config.max_sequence_length)
            n, H = len(self.attn_indices), self.config.n_attn_heads
            shapes["attn_keys"] = [n, batch_size, S, H, self.config.key_head_size]
            shapes["attn_values"] = [n, batch_size, S, H, self.config.value_head_size]
            shapes["attn_position"] = [1]
        return shapes

    def state_layout(self):
        # one position for all rows: rows at different positions are decoded apart
        return {"mru": (1, None), "attn_keys": (1, None), "attn_values": (1, None), "attn_position": (None, None)}

    def initial_state(self, batch_size):
        """The state of a fresh sequence: identity matrices for the MRU layers, an empty attention cache; feeding it
        gives the same logits as state=None."""
        state = {}
        for key, shape in self.initial_state_shapes(batch_size).items():
            if key == "mru":
                state[key] = paddle.broadcast_to(paddle.eye(shape[-1], dtype="float32"), shape).clone()
            elif key == "attn_position":
                state[key] = paddle.zeros([1], "int64")
            else:
                state[key] = paddle.zeros(shape, activation_dtype(self.wte.weight))
        return state

    @paddle.jit.not_to_static
    def _check_state(self, state, batch_size):
        """Checks the state (check_state) and returns the number of tokens it has seen: an int, or while tracing the
        state's int64 tensor [1]."""
        position = 0
        if isinstance(state, dict) and "attn_position" in state:
            if list(state["attn_position"].shape) != [1]:
                raise ValueError(f"state['attn_position'] must have shape [1], got "
                                 f"{list(state['attn_position'].shape)}")
            position = int(state["attn_position"].item()) if paddle.in_dynamic_mode() else state["attn_position"]
        check_state(state, self.initial_state_shapes(batch_size, position if isinstance(position, int) else None),
                    batch_size)
        return position

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, input_ids, state=None, use_cache=False):
        """input_ids [B, T] int64; state from an earlier call (None: a fresh sequence). Returns CausalLMOutput with
        logits [B, T, vocab] float32 and, if use_cache, the state after the last token."""
        check_input_ids(input_ids, self.config.vocab_size)
        B, T = input_ids.shape
        position = 0 if state is None else self._check_state(state, B)
        x = self.dropout(self.wte(input_ids))
        mru_states, keys, values = [], [], []
        for i, (layer, ln) in enumerate(zip(self.layers, self.pre_lns)):
            h = ln(x)
            if isinstance(layer, MRU):
                prev = None if state is None else state["mru"][len(mru_states)]
                out, s = layer(h, prev)
                mru_states.append(s)
            elif isinstance(layer, Attention):
                j = len(keys)
                fresh = state is None or (isinstance(position, int) and position == 0)  # a tensor: traced, cached
                cache = None if fresh else (state["attn_keys"][j], state["attn_values"][j])
                out, cache = layer(h, self.position_embedding, position, cache, use_cache)
                if use_cache:
                    keys.append(cache[0])
                    values.append(cache[1])
                else:
                    keys.append(None)
            else:
                out = layer(h)
            x = x + out
        x = self.final_ln(x)
        logits = self.wte.attend(x).astype("float32")
        if not use_cache:
            return CausalLMOutput(logits=logits)
        new_state = {}
        if mru_states:
            new_state["mru"] = paddle.stack(mru_states)
        if self.attn_indices:
            new_state["attn_keys"] = paddle.stack(keys)
            new_state["attn_values"] = paddle.stack(values)
            new_state["attn_position"] = paddle.full([1], position + T, "int64")
        return CausalLMOutput(logits=logits, state=new_state)

    # ------------------------------------------------------------------------------------------------ training
    def parameter_groups(self, weight_decay, sequence_length, grad_clip=1.0):
        """The original's three AdamW parameter groups (train.py, configure_optimizer), as dicts with keys name,
        params, weight_decay, lr_scale (multiplies the scheduled learning rate), max_grad_norm (per-group gradient
        clipping; None: none):
          "no_decay": wte and every LayerNorm weight: no weight decay, clip grad_clip (the original's 1.0);
          "decay": MLP, mru_out, state_matrices_down and attention weights: weight_decay, clip grad_clip;
          "state_matrices_up": every MRU's state_matrices_up: weight_decay, LR multiplier (1/o) sqrt(2/T), clip
              sqrt(T/2) with T = sequence_length (the original justifies them by muP fan-in and by each MRU input
              affecting about T/2 later tokens).
        grad_clip 0 turns clipping off in every group. Empty groups are left out."""
        T = int(sequence_length)
        clip = grad_clip if grad_clip and grad_clip > 0 else None
        no_decay, decay, up = [self.wte.weight, self.final_ln.weight], [], []
        no_decay += [ln.weight for ln in self.pre_lns]
        for layer in self.layers:
            if isinstance(layer, MRU):
                up.append(layer.state_matrices_up.weight)
                decay += [layer.state_matrices_down, layer.mru_out.weight]
            elif isinstance(layer, MLP):
                decay += [layer.mlp[0].weight, layer.mlp[2].weight]
            else:
                decay += [layer.query_layer.weight, layer.key_layer.weight, layer.value_layer.weight,
                          layer.attention_down.weight]
        groups = [dict(name="no_decay", params=no_decay, weight_decay=0.0, lr_scale=1.0, max_grad_norm=clip),
                  dict(name="decay", params=decay, weight_decay=weight_decay, lr_scale=1.0, max_grad_norm=clip)]
        if up:
            o = self.config.state_order
            groups.append(dict(name="state_matrices_up", params=up, weight_decay=weight_decay,
                               lr_scale=state_matrices_up_lr_scale(o, T),
                               max_grad_norm=math.sqrt(T / 2) if clip is not None else None))
        return [g for g in groups if g["params"]]


def state_matrices_up_lr_scale(order, sequence_length):
    """(1/o) sqrt(2/T): 0.01105 for o = 8, T = 256 (shakespeare-char), 0.0039 for o = 16, T = 512 (tinystories)."""
    return (1.0 / order) * math.sqrt(2.0 / sequence_length)


def _layer_norm(size):
    return LayerNorm(size, epsilon=LN_EPS, bias_attr=False)
