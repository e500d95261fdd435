"""What the models with a fused CPU decoding step share (RWKV-v2's, RWKV-4's, HGRN2's): when a single-token step may
run as the one operator call, the list of weights the operator reads, and the checks around the call."""
import paddle

from ..layers.linear import WEIGHT_ONLY, weight_only_layers

NORMS = ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias")


def block_weight_names(top, time_mix, channel_mix, n_layer, ffn_pre):
    """Parameter names in a fused RWKV step's order: `top` (the weights outside the blocks), then per block its two
    norms, its time-mix `att` (names `time_mix` in it) or, in block 0 of the "RWKV-ffnPre" variant, the channel-mix
    `ffnPre`, and its channel-mix `ffn` (names `channel_mix`)."""
    names = list(top)
    for i in range(n_layer):
        block = f"blocks.{i}."
        names += [block + n for n in NORMS]
        sub, mix = ("ffnPre.", channel_mix) if ffn_pre and i == 0 else ("att.", time_mix)
        names += [block + sub + n for n in mix]
        names += [block + "ffn." + n for n in channel_mix]
    return names


def run_step_operator(name, weights, input_ids, state, call, state_keys=("wkv", "att_shift", "ffn_shift")):
    """call() (a fused step's operator) after the checks every step makes: input_ids a [B, 1] tensor, a state with
    the tensors `state_keys` (RWKV's wkv and shift tensors by default), no gradient wanted (the operators have no
    backward); the operator's own checks, which Paddle raises as OSError with the C++ source line after, become a
    ValueError of their first line."""
    if not isinstance(input_ids, paddle.Tensor) or input_ids.ndim != 2 or input_ids.shape[1] != 1:
        raise ValueError(f"{name}: input_ids must be a paddle.Tensor [B, 1] (one token per row)")
    missing = set(state_keys) - set(state)
    if missing:
        raise ValueError(f"{name}: the state lacks {sorted(missing)}")
    if paddle.is_grad_enabled() and any(not w.stop_gradient for w in weights):
        raise ValueError(f"{name} is inference only (no backward): call it under paddle.no_grad()")
    try:
        return call()
    except OSError as err:
        raise ValueError(str(err).strip().splitlines()[0]) from None


class FusedStepMixin:
    """Mixed into a PretrainedModel with an input embedding (`emb`, or what input_embedding() returns) and a method
    fused_weight_names() (its parameter names in the order its step operator takes them).

    Single-token steps on CPU without gradients go through the fused operator, with the embedding and the matrices
    in float32, bfloat16, float16 or int8 (each int8 one followed by its scales) and the other weights in float32;
    fused_step = False (on the class or an instance) runs the layers one by one instead. The operator reads the
    parameter tensors collected on its first use (16-bit norms, mixes and decays widened to float32 copies then):
    after assigning new Parameter or sub-layer objects, or changing a 16-bit model's vectors, reset _fused_weights
    to None (set_value on float32 weights and on matrices is fine)."""

    fused_step = True
    _fused_weights = None

    def input_embedding(self):
        return self.emb

    def _fusable(self, input_ids, state):
        """Whether this step can run fused: CPU, float32, 16-bit or int8 weights, int64 ids, a state of float32
        and int64 tensors, no gradients, not traced (a traced program keeps the layers, which any device runs)."""
        weight = self.input_embedding().weight
        return (self.fused_step and paddle.in_dynamic_mode() and not paddle.is_grad_enabled()
                and weight.dtype in (paddle.float32, *WEIGHT_ONLY) and weight.place.is_cpu_place()
                and input_ids.dtype == paddle.int64
                and all(v.dtype in (paddle.float32, paddle.int64) for v in state.values()))

    def _fused_step_weights(self):
        if self._fused_weights is None:
            params, matrices = dict(self.named_parameters()), weight_only_layers(self)
            weights = []
            for name in self.fused_weight_names():
                p = params[name]
                if name in matrices:
                    weights += [p] if p.dtype != paddle.int8 else [p, matrices[name].weight_scale]
                else:
                    weights.append(p if p.dtype == paddle.float32 else p.astype(paddle.float32))
            self._fused_weights = weights
        return self._fused_weights
