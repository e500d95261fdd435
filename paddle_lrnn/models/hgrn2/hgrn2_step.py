"""The fused HGRN2 decoding step: one operator call per generated token (kernel custom_ops/kernels/hgrn2_step.h on
weight_matmul.h's products and gla.h's recurrence, binding custom_ops/paddle/hgrn2_step.cc). CPU only, inference only
(no gradient). It lives beside the model because it knows the model's parameter names; its specification is the
model's layer-by-layer step (HGRN2ForCausalLM with fused_step = False). Every config variant runs fused: short
convolutions or not, lower bounds or not, g_norm with or without its scale, tied or separate head."""
from ...layers.hgrn2 import CONV_KEYS, G_NORM_EPS
from ...ops.library import library
from ..fused_step import run_step_operator

OP = "paddle_lrnn.models.hgrn2.hgrn2_step"
PROJECTIONS = ("attn.q_proj.weight", "attn.f_proj.weight", "attn.i_proj.weight")
CONVS = ("attn.q_conv1d.weight", "attn.f_conv1d.weight", "attn.i_conv1d.weight")
MLP = ("mlp_norm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def weight_names(config):
    """The parameter names of HGRN2ForCausalLM (config: its HGRN2Config) in the order hgrn2_step takes the weights
    (the lower bounds, computed per call, come after them)."""
    names = ["model.embeddings.weight", "model.norm.weight"]
    if not config.tie_word_embeddings:
        names.append("lm_head.weight")
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        names += [layer + "attn_norm.weight"] + [layer + n for n in PROJECTIONS]
        if config.use_short_conv:
            names += [layer + n for n in CONVS]
        if config.elementwise_affine:
            names.append(layer + "attn.g_norm.weight")
        names.append(layer + "attn.o_proj.weight")
        names += [layer + n for n in MLP]
    return names


def hgrn2_step(weights, input_ids, state, config, lower_bounds=None):
    """One token of HGRN2 for every batch row, the whole network in one CPU operator call.

    It computes what HGRN2ForCausalLM's eager forward does for T = 1 with use_cache (that path is its specification
    and the tests compare the two): the embedding row, per layer the norms, projections, short convolutions, gates,
    the GLA recurrence, g_norm, o_proj and the SwiGLU MLP, then the final norm and the head. The matrix-vector
    products stream each weight once, shared over the operator library's threads (PADDLE_LRNN_NUM_THREADS).

    Args:
        weights: CPU tensors in the order of weight_names(config): the embedding and the matrices in float32,
            bfloat16, float16 or int8 (an int8 one followed by its float32 scales), the rest float32
            (FusedStepMixin._fused_step_weights builds this list from a model).
        input_ids: [B, 1] int64, the current token of each row.
        state: HGRN2ForCausalLM's state dict: "recurrent" [L, B, H, K, V] and, with use_short_conv, "conv_q",
            "conv_f", "conv_i" [L, B, C, W].
        config: the model's HGRN2Config (num_hidden_layers, its heads, tie_word_embeddings, use_short_conv,
            elementwise_affine, use_lower_bound, norm_eps).
        lower_bounds: with use_lower_bound, the layers' beta [L, H * K] float32 (HGRN2Model.layer_lower_bounds()).

    Returns:
        (logits [B, 1, V] float32, the state after this token, in the same layout).
    """
    if config.use_lower_bound and lower_bounds is None:
        raise ValueError(f"{OP}: the config has use_lower_bound: pass the layers' lower bounds")
    keys = ("recurrent", *CONV_KEYS) if config.use_short_conv else ("recurrent",)
    listed = list(weights) + ([lower_bounds] if config.use_lower_bound else [])
    logits, recurrent, *convs = run_step_operator(
        OP, weights, input_ids, state, lambda: library().lrnn_hgrn2_step(
            input_ids, listed, state["recurrent"], *(state[k] if config.use_short_conv else None for k in CONV_KEYS),
            int(config.num_hidden_layers), int(config.layer_heads[0]), bool(config.tie_word_embeddings),
            bool(config.elementwise_affine), bool(config.use_lower_bound), float(config.norm_eps), G_NORM_EPS),
        state_keys=keys)
    new_state = {"recurrent": recurrent}
    if config.use_short_conv:
        new_state.update(zip(CONV_KEYS, convs))
    return logits, new_state
