"""The fused RWKV-v2 decoding step (models/rwkv2/rwkv2_step.py): equal to the model's eager step (logits and every
state tensor) for both variants, batches of 1 and 3, widths that are no multiple of 8, several matrix tiles, a copy-head
memory that slides past ctx_len, and the converted fixture against the original runner; and bad input."""
import os
from unittest import mock

import numpy as np
import paddle
import pytest
from helpers import assert_same_steps, count_calls, off_init, run_steps

from paddle_lrnn.convert import converter
from paddle_lrnn.layers import init
from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM
from paddle_lrnn.models.rwkv2 import modeling
from paddle_lrnn.models.rwkv2.rwkv2_step import rwkv2_step

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "rwkv2")


def without_orthogonal_init():
    """Skips the orthogonal matrices of the initialisation, overwritten here anyway: once Paddle is imported, numpy's
    QR of a matrix large enough for OpenBLAS's threads (1100 x 72) takes a second instead of milliseconds."""
    return mock.patch.object(init, "orthogonal_", lambda *args, **kwargs: None)


def perturbed_model(seed, **config):
    """A random model off its initialisation (zero matrices and uniform mixes would hide mistakes)."""
    paddle.seed(seed)
    with without_orthogonal_init():
        model = RWKV2ForCausalLM(RWKV2Config(**{**dict(vocab_size=37, n_embd=40, n_layer=3, ctx_len=6), **config}))
    return off_init(model, 0.2)


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the model's calls of the fused operator (so a test knows which path ran)."""
    return count_calls(monkeypatch, modeling, "rwkv2_step")


@pytest.mark.parametrize("B,config", [
    (1, dict()),
    (3, dict(variant="RWKV-ffnPre")),
    (2, dict(n_embd=72, vocab_size=1100, n_layer=2, ctx_len=3)),  # 2 row blocks, 2 column tiles, threads
    (1, dict(n_layer=1, ctx_len=70)),  # the copy head's scores in several tasks
    (3, dict(ctx_len=1)),  # no copy-head memory at all
])
def test_fused_step_equals_the_eager_step(B, config, fused_calls):
    model = perturbed_model(0, **config)
    V, ctx_len = model.config.vocab_size, model.config.ctx_len
    ids = paddle.randint(0, V, [B, 9])
    with paddle.no_grad():  # a full copy-head memory (ctx_len - 1 tokens), which then slides
        prompt = model(paddle.randint(0, V, [B, ctx_len + 1]), use_cache=True).state
    assert_same_steps(model, ids, prompt)
    assert_same_steps(model, ids[:, :3], None)  # from a fresh state: no memory before the first token
    assert len(fused_calls) == 12


def test_memory_longer_than_the_window(fused_calls):
    model = perturbed_model(3, ctx_len=20)
    with paddle.no_grad():
        state = model(paddle.randint(0, 37, [2, 30]), use_cache=True).state
    assert state["head_keys"].shape[1] == 19
    model.config.ctx_len = 6  # the memory now reaches further back than the copy head sees: only 5 entries count
    assert_same_steps(model, paddle.randint(0, 37, [2, 3]), state)
    assert len(fused_calls) == 3


def test_fused_step_reproduces_the_original_runner():
    with without_orthogonal_init():
        model = converter("rwkv2").from_torch(os.path.join(FIXTURE, "rwkv2-small.pth"))
    reference = np.load(os.path.join(FIXTURE, "rwkv2-small-ref.npz"))
    tokens = paddle.to_tensor(reference["tokens"][None])
    logits, _ = run_steps(model, tokens, None, True)
    assert np.abs(logits[0] - reference["logits"]).max() <= 1e-4
    assert_same_steps(model, tokens[:, :12])


def test_gradients_or_other_dtypes_take_the_eager_path(fused_calls):
    model = perturbed_model(1)
    ids = paddle.to_tensor([[3]])
    model(ids, use_cache=True)  # gradients enabled
    with paddle.no_grad():
        model(ids)  # no state wanted
        model(paddle.to_tensor([[3, 4]]), use_cache=True)  # two tokens
        model(paddle.to_tensor([[3]], dtype="int32"), use_cache=True)
    assert fused_calls == []


def test_bad_input_is_one_clear_error():
    model = perturbed_model(2)
    weights = model._fused_step_weights()
    with paddle.no_grad():
        state = model(paddle.to_tensor([[1, 2]]), use_cache=True).state
        with pytest.raises(ValueError, match=r"token id 37 is outside the vocabulary \[0, 37\)"):
            model(paddle.to_tensor([[37]]), state=state, use_cache=True)
        kw = dict(ctx_len=6, ffn_pre=False, k_clamp=60.0, eps=1e-16, ln_eps=1e-5)
        ids = paddle.to_tensor([[1]])
        with pytest.raises(ValueError, match=r"att_shift state has shape \[3, 1, 41\], expected \[3, 1, 40\]"):
            rwkv2_step(weights, ids, {**state, "att_shift": paddle.zeros([3, 1, 41])}, **kw)
        with pytest.raises(ValueError, match=r"too few weights \(50\), missing blocks.2.ffn.value.weight"):
            rwkv2_step(weights[:-1], ids, state, **kw)
        swapped = list(weights)
        swapped[13] = model.blocks[0].ffn.key.weight  # where blocks.0.att.key.weight belongs
        with pytest.raises(ValueError, match=r"blocks.0.att.key.weight has shape \[40, 160\], expected \[40, 40\]"):
            rwkv2_step(swapped, ids, state, **kw)
        with pytest.raises(ValueError, match="wkv state has the wrong dtype"):
            rwkv2_step(weights, ids, {**state, "wkv": state["wkv"].astype("float64")}, **kw)
        with pytest.raises(ValueError, match="both head_keys and head_ids"):
            rwkv2_step(weights, ids, {k: v for k, v in state.items() if k != "head_ids"}, **kw)
        with pytest.raises(ValueError, match=r"ids must be a paddle.Tensor \[B, 1\]"):
            rwkv2_step(weights, paddle.to_tensor([[1, 2]]), state, **kw)
    with pytest.raises(ValueError, match="inference only"):
        rwkv2_step(weights, ids, state, **kw)
