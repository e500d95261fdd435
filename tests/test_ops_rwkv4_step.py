"""The fused RWKV-4 decoding step (models/rwkv4/rwkv4_step.py): equal to the model's eager step (logits and every
state tensor) for both variants, batches of 1 and 3, widths that are no multiple of 8 and other dim_att / dim_ffn,
several matrix tiles, a state carried from a parallel prefill; the converted fixture against the original runner;
when it runs and when the layers run instead; and bad input."""
import os

import numpy as np
import paddle
import pytest
from helpers import (assert_fused_only_where_it_runs, assert_same_steps, assert_steps_continue_a_prefill, count_calls,
                     run_steps)

from paddle_lrnn.convert import converter
from paddle_lrnn.models.modeling_utils import skip_init
from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM
from paddle_lrnn.models.rwkv4 import modeling
from paddle_lrnn.models.rwkv4.rwkv4_step import rwkv4_step

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "rwkv4")


def random_model(seed, **config):
    """Random weights of every tensor (the initialisation's zero matrices would hide mistakes)."""
    paddle.seed(seed)
    with skip_init():
        model = RWKV4ForCausalLM(RWKV4Config(**{**dict(vocab_size=37, n_embd=40, n_layer=3), **config}))
    for name, p in model.named_parameters():
        p.set_value(paddle.randn(p.shape) * (1.0 if ".time_" in name else 0.3) + (1.0 if ".ln" in name else 0.0))
    model.eval()
    return model


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the model's calls of the fused operator (so a test knows which path ran)."""
    return count_calls(monkeypatch, modeling, "rwkv4_step")


@pytest.mark.parametrize("variant", ["RWKV", "RWKV-ffnPre"])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_step_equals_the_eager_step(variant, batch, fused_calls):
    model = random_model(0, variant=variant)
    ids = paddle.randint(0, 37, [batch, 9])
    assert_same_steps(model, ids)
    assert len(fused_calls) == 9


def test_other_widths_and_several_tiles(fused_calls):
    """C = 44 (no multiple of 8), dim_att 20, dim_ffn 1100 (two column tiles of the channel-mix's key, 18 row tiles
    of its value) and 70 rows of the head."""
    model = random_model(1, vocab_size=70, n_embd=44, n_layer=2, dim_att=20, dim_ffn=1100)
    assert_same_steps(model, paddle.randint(0, 70, [2, 5]))
    assert len(fused_calls) == 5


def test_after_a_parallel_prefill():
    assert_steps_continue_a_prefill(random_model(2), 37)


def test_converted_fixture_matches_the_original_runner(fused_calls):
    for name in ("rwkv4-small", "rwkv4-ffnpre"):
        reference = np.load(os.path.join(FIXTURE, f"{name}-ref.npz"))
        model = converter("rwkv4").from_torch(os.path.join(FIXTURE, f"{name}.pth"), dtype="float32")
        logits, states = run_steps(model, paddle.to_tensor(reference["tokens"][None]), None, True)
        assert np.abs(logits[0] - reference["logits"]).max() <= 1e-4
        expected = reference["state_wkv_fp64"]
        has_att = ~np.isnan(expected[:, 0, 0])
        wkv = states[-1]["wkv"][:, 0]
        assert np.abs(wkv[has_att] - expected[has_att]).max() <= 1e-5 * np.abs(expected[has_att]).max()
    assert len(fused_calls) == 2 * 48


def test_when_the_layers_run_instead(fused_calls):
    assert_fused_only_where_it_runs(random_model(3), 37, fused_calls)


def test_bad_input():
    model = random_model(4)
    with paddle.no_grad():
        with pytest.raises(ValueError, match=r"token id 37 is outside the vocabulary \[0, 37\)"):
            model(paddle.to_tensor([[37]]), use_cache=True)
        state = model.initial_state(1)
        weights = model._fused_step_weights()
        with pytest.raises(ValueError, match=r"weights for 3 blocks, expected"):
            rwkv4_step(weights + weights[-1:], paddle.to_tensor([[1]]), state, ffn_pre=False, ln_eps=1e-5)
        with pytest.raises(ValueError, match=r"blocks.0.att.time_decay has shape \[40\], expected \[20\]"):
            rwkv4_step(weights, paddle.to_tensor([[1]]), dict(state, wkv=paddle.zeros([3, 1, 3, 20])),
                       ffn_pre=False, ln_eps=1e-5)
    with pytest.raises(ValueError, match="inference only"):
        rwkv4_step(model._fused_step_weights(), paddle.to_tensor([[1]]), model.initial_state(1), ffn_pre=False,
                   ln_eps=1e-5)
