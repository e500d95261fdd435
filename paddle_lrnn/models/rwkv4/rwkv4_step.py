"""The fused RWKV-4 decoding step: one operator call per generated token (kernel custom_ops/kernels/rwkv4_step.h on
RWKV-v2's step parts, binding custom_ops/paddle/rwkv4_step.cc). CPU only, inference only (no gradient).
It lives beside the model because it knows the model's parameter names; its specification is the model's
layer-by-layer step (RWKV4ForCausalLM with fused_step = False)."""
from ...ops.library import library
from ..fused_step import block_weight_names, run_step_operator

OP = "paddle_lrnn.models.rwkv4.rwkv4_step"
TIME_MIX = ("time_decay", "time_first", "time_mix_k", "time_mix_v", "time_mix_r", "key.weight", "value.weight",
            "receptance.weight", "output.weight")
CHANNEL_MIX = ("time_mix_k", "time_mix_r", "key.weight", "receptance.weight", "value.weight")
TOP = ("emb.weight", "blocks.0.ln0.weight", "blocks.0.ln0.bias", "ln_out.weight", "ln_out.bias", "head.weight")


def weight_names(n_layer, ffn_pre=False):
    """The parameter names of RWKV4ForCausalLM in the order rwkv4_step takes the weights. ffn_pre: the
    "RWKV-ffnPre" variant, whose block 0 has a channel-mix `ffnPre` instead of `att`."""
    return block_weight_names(TOP, TIME_MIX, CHANNEL_MIX, n_layer, ffn_pre)


def rwkv4_step(weights, input_ids, state, *, ffn_pre, ln_eps):
    """One token of RWKV-4 for every batch row, the whole network in one CPU operator call.

    It computes what RWKV4ForCausalLM's eager forward does for T = 1 with use_cache (that path is its specification
    and the tests compare the two): the embedding and ln0, the blocks with their token shifts and the WKV update,
    the final norm and the head. The matrix-vector products stream each weight once, shared over the operator
    library's threads (PADDLE_LRNN_NUM_THREADS).

    Args:
        weights: CPU tensors in the order of weight_names(n_layer, ffn_pre): the embedding and the matrices in
            float32, bfloat16, float16 or int8 (an int8 one followed by its float32 scales), the rest float32
            (FusedStepMixin._fused_step_weights builds this list from a model).
        input_ids: [B, 1] int64, the current token of each row.
        state: RWKV4ForCausalLM's state dict: "wkv" [L, B, 3, dim_att], "att_shift" and "ffn_shift" [L, B, C].
        ffn_pre: the "RWKV-ffnPre" variant. ln_eps: the LayerNorms' epsilon.

    Returns:
        (logits [B, 1, V] float32, the state after this token, in the same layout).
    """
    logits, wkv, att_shift, ffn_shift = run_step_operator(
        OP, weights, input_ids, state, lambda: library().lrnn_rwkv4_step(
            input_ids, weights, state["wkv"], state["att_shift"], state["ffn_shift"], bool(ffn_pre), float(ln_eps)))
    return logits, {"wkv": wkv, "att_shift": att_shift, "ffn_shift": ffn_shift}
