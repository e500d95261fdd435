"""The fused RWKV-v2 decoding step: one operator call per generated token (kernel custom_ops/kernels/rwkv2_step.h,
binding custom_ops/paddle/rwkv2_step.cc, built into the same operator library as paddle_lrnn.ops). CPU only,
inference only (no gradient). It lives beside the model because it knows the model's parameter names; its
specification is the model's layer-by-layer step (RWKV2ForCausalLM with fused_step = False)."""
from ...ops.library import library
from ..fused_step import block_weight_names, run_step_operator

OP = "paddle_lrnn.models.rwkv2.rwkv2_step"
TIME_MIX = ("time_decay", "time_first", "time_mix", "key.weight", "value.weight", "receptance.weight",
            "output.weight")
CHANNEL_MIX = ("time_mix", "key.weight", "receptance.weight", "value.weight")
TOP = ("emb.weight", "ln_out.weight", "ln_out.bias", "head.weight", "head_q.weight", "head_k.weight")


def weight_names(n_layer, ffn_pre=False):
    """The parameter names of RWKV2ForCausalLM (the original's state-dict keys) in the order rwkv2_step takes the
    weights. ffn_pre: the "RWKV-ffnPre" variant, whose block 0 has a channel-mix `ffnPre` instead of `att`."""
    return block_weight_names(TOP, TIME_MIX, CHANNEL_MIX, n_layer, ffn_pre)


def rwkv2_step(weights, input_ids, state, *, ctx_len, ffn_pre, k_clamp, eps, ln_eps):
    """One token of RWKV-v2 for every batch row, the whole network in one CPU operator call.

    It computes what RWKV2ForCausalLM's eager forward does for T = 1 with use_cache (that path is its
    specification and the tests compare the two): embedding, the blocks with their token shifts and the WKV update
    (wkv.h's step), the final norm, the head and the copy-head bonus over the last ctx_len tokens. The matrix-vector
    products stream each weight once, shared over the operator library's threads (PADDLE_LRNN_NUM_THREADS).

    Inference only: there is no backward, so call it under paddle.no_grad() (it refuses weights that require
    gradients while gradients are enabled). CPU only; on other devices use the model's normal step path.

    Args:
        weights: CPU tensors in the order of weight_names(n_layer, ffn_pre): the embedding and the matrices in
            float32, bfloat16, float16 or int8 (an int8 one followed by its float32 scales), the rest float32
            (FusedStepMixin._fused_step_weights builds this list from a model).
        input_ids: [B, 1] int64, the current token of each row.
        state: RWKV2ForCausalLM's state dict: "wkv" [L, B, 3, C], "att_shift" and "ffn_shift" [L, B, C], and
            optionally the copy head's memory "head_keys" [B, M, D] with "head_ids" [B, M] int64.
        ctx_len: the copy head's window (the memory keeps the last ctx_len - 1 tokens).
        ffn_pre: the "RWKV-ffnPre" variant. k_clamp, eps: RWKV-v2's K clamp and denominator epsilon. ln_eps: the
            LayerNorms' epsilon.

    Returns:
        (logits [B, 1, V] float32, the state after this token, in the same layout).
    """
    if ("head_keys" in state) != ("head_ids" in state):
        raise ValueError(f"{OP}: the state must hold both head_keys and head_ids, or neither")
    logits, wkv, att_shift, ffn_shift, keys, ids = run_step_operator(
        OP, weights, input_ids, state, lambda: library().lrnn_rwkv2_step(
            input_ids, weights, state["wkv"], state["att_shift"], state["ffn_shift"], state.get("head_keys"),
            state.get("head_ids"), bool(ffn_pre), int(ctx_len), float(k_clamp), float(eps), float(ln_eps)))
    new_state = {"wkv": wkv, "att_shift": att_shift, "ffn_shift": ffn_shift}
    if ctx_len > 1:
        new_state["head_keys"], new_state["head_ids"] = keys, ids
    return logits, new_state
