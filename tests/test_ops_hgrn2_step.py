"""The fused HGRN2 decoding step (models/hgrn2/hgrn2_step.py): equal to the model's eager step (logits and every
state tensor) for every config variant (short convolutions, lower bounds, g_norm's scale, tied head), batches of 1
and 3, a forget width other than the hidden size, head widths that are no multiple of 8, several matrix tiles, a
state carried from a parallel prefill, every variant with bfloat16 and int8 weights too (test_weight_only.py adds
float16 and the comparison with the float32 model); when it runs and when the layers run instead; and bad input."""
import paddle
import pytest
from helpers import (assert_fused_only_where_it_runs, assert_same_steps, assert_steps_continue_a_prefill, count_calls,
                     small_model)

from paddle_lrnn.models.hgrn2 import modeling
from paddle_lrnn.models.hgrn2.hgrn2_step import hgrn2_step
from paddle_lrnn.models.quantization import quantize_int8_

VARIANTS = {
    "short-conv-lower-bound": dict(num_hidden_layers=3),
    "plain": dict(use_short_conv=False),
    "no-lower-bound-no-affine": dict(use_lower_bound=False, elementwise_affine=False),
    "tied-conv-size-1": dict(tie_word_embeddings=True, conv_size=1),
    # 4 heads of K = 8 forget channels (32) and V = 9 input channels (36): the forget width is not the hidden size
    "forget-width-other": dict(hidden_size=36, use_lower_bound=False),
}


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the model's calls of the fused operator (so a test knows which path ran)."""
    return count_calls(monkeypatch, modeling, "hgrn2_step")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_step_equals_the_eager_step(variant, batch, fused_calls):
    model = small_model("hgrn2", seed=batch, **VARIANTS[variant])
    assert_same_steps(model, paddle.randint(0, 41, [batch, 9]))
    assert len(fused_calls) == 9


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("fmt", ["bfloat16", "int8"])
def test_every_variant_with_16_bit_and_int8_weights(variant, fmt, fused_calls):
    """(test_weight_only.py checks the default and tied layouts in every format against the float32 model.)"""
    model = small_model("hgrn2", seed=7, **VARIANTS[variant])
    if fmt == "int8":
        quantize_int8_(model)
    else:
        model.to(dtype=fmt)
    assert_same_steps(model, paddle.randint(0, 41, [2, 6]))
    assert len(fused_calls) == 6


def test_other_widths_and_several_tiles(fused_calls):
    """D = 40 (5 heads of V = 8), MLP width 1100 (two column tiles of gate and up, several row tiles of down) and 70
    rows of the head."""
    model = small_model("hgrn2", vocab_size=70, hidden_size=40, intermediate_size=1100)
    assert_same_steps(model, paddle.randint(0, 70, [2, 5]))
    assert len(fused_calls) == 5


def test_after_a_parallel_prefill(fused_calls):
    assert_steps_continue_a_prefill(small_model("hgrn2", seed=4), 41)
    assert len(fused_calls) == 5


def test_when_the_layers_run_instead(fused_calls):
    assert_fused_only_where_it_runs(small_model("hgrn2", seed=5), 41, fused_calls)


def test_bad_input():
    model = small_model("hgrn2", seed=6, num_hidden_layers=3)
    config, bounds = model.config, model.model.layer_lower_bounds()
    with paddle.no_grad():
        with pytest.raises(ValueError, match=r"token id 41 is outside the vocabulary \[0, 41\)"):
            model(paddle.to_tensor([[41]]), use_cache=True)
        state = model.initial_state(1)
        weights = model._fused_step_weights()
        ids = paddle.to_tensor([[1]])
        unbounded = small_model("hgrn2", use_lower_bound=False)
        extra = unbounded._fused_step_weights() + weights[-1:]
        with pytest.raises(ValueError, match=r"^lrnn_hgrn2_step: 30 weights for 2 layers, expected 29$"):
            hgrn2_step(extra, ids, unbounded.initial_state(1), unbounded.config)
        with pytest.raises(ValueError, match=r"lower bounds has shape \[256, 32\], expected \[3, 32\]"):
            hgrn2_step(weights + weights[-1:], ids, state, config, bounds)  # (the extra weight where they belong)
        with pytest.raises(ValueError, match=r"recurrent state has shape \[3, 1, 4, 12, 8\], expected "
                                             r"\[3, 1, 4, 8, 8\]$"):
            hgrn2_step(weights, ids, dict(state, recurrent=paddle.zeros([3, 1, 4, 12, 8])), config, bounds)
        with pytest.raises(ValueError, match=r"conv_f state has shape \[3, 1, 32, 3\], expected \[3, 1, 32, 4\]"):
            hgrn2_step(weights, ids, dict(state, conv_f=paddle.zeros([3, 1, 32, 3])), config, bounds)
        with pytest.raises(ValueError, match=r"recurrent state has the wrong dtype"):
            hgrn2_step(weights, ids, dict(state, recurrent=state["recurrent"].astype("float64")), config, bounds)
        with pytest.raises(ValueError, match=r"the state lacks \['conv_i'\]"):
            hgrn2_step(weights, ids, {k: v for k, v in state.items() if k != "conv_i"}, config, bounds)
        with pytest.raises(ValueError, match=r"pass the layers' lower bounds"):
            hgrn2_step(weights, ids, state, config)
        with pytest.raises(ValueError, match=r"lower bounds has shape \[2, 32\], expected \[3, 32\]"):
            hgrn2_step(weights, ids, state, config, bounds[1:])
        with pytest.raises(ValueError, match=r"input_ids must be a paddle.Tensor \[B, 1\]"):
            hgrn2_step(weights, paddle.to_tensor([[1, 2]]), state, config, bounds)
    with pytest.raises(ValueError, match="inference only"):
        hgrn2_step(model._fused_step_weights(), ids, state, config, bounds)
