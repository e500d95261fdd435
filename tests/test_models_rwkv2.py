"""RWKV2ForCausalLM: the original's parameter count and initialisation, every mode giving the same logits (parallel,
one token at a time, chunks with the state, the WKV and the TimeX kernel), save/load, and bad input."""
import json
import math
import os

import numpy as np
import paddle
import pytest
from helpers import logits_in_chunks, off_init

from paddle_lrnn.models import AutoConfig, AutoModelForCausalLM, ModelFileError
from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM


def perturbed_model(seed=0, **config):
    """A small model moved off its initialisation (zero matrices and uniform mixes would hide mistakes)."""
    paddle.seed(seed)
    model = RWKV2ForCausalLM(RWKV2Config(**{**dict(vocab_size=37, n_embd=32, n_layer=3, ctx_len=24), **config}))
    return off_init(model, 0.2)


def set_kernel(model, kernel):
    model.config.time_mix_kernel = kernel
    for block in model.blocks:
        if hasattr(block, "att"):
            block.att.kernel = kernel


def logits_step_by_step(model, ids):
    return logits_in_chunks(model, ids, list(range(1, ids.shape[1])))[0]


@pytest.mark.slow
def test_default_config_has_the_original_parameter_count_and_initialisation():
    paddle.seed(0)
    model = RWKV2ForCausalLM(RWKV2Config())
    assert model.num_parameters() == 26_944_512  # 2VC + L(13C^2 + 8C) + 2C + 512C for V=6064, C=512, L=6
    params = dict(model.named_parameters())
    assert len(params) == 96  # the original's 97 state-dict keys minus the copy_mask buffer
    rms = {name: float(np.sqrt(np.mean(p.numpy().astype(np.float64) ** 2))) for name, p in params.items()}
    C = 512
    assert rms["emb.weight"] == pytest.approx(1e-4, rel=0.02)
    assert rms["head.weight"] == pytest.approx(0.5 / math.sqrt(C), rel=0.02)
    assert rms["head_k.weight"] == pytest.approx(0.1 / math.sqrt(C), rel=0.02)
    for i in range(6):
        assert rms[f"blocks.{i}.att.value.weight"] == pytest.approx(1 / math.sqrt(C), rel=0.02)
        assert rms[f"blocks.{i}.ffn.key.weight"] == pytest.approx(1 / math.sqrt(C), rel=0.02)
        for zero in ("att.key", "att.receptance", "att.output", "ffn.receptance", "ffn.value"):
            assert rms[f"blocks.{i}.{zero}.weight"] == 0
        mix = params[f"blocks.{i}.att.time_mix"].numpy().ravel()
        assert (mix[: C // 2] == 0).all() and (mix[C // 2:] == 1).all()
        np.testing.assert_allclose(np.exp(params[f"blocks.{i}.att.time_first"].numpy()), 0.3, rtol=1e-6)
    assert rms["head_q.weight"] == 0
    # Per-step decay W = exp(-exp(time_decay)) at the first and last channel, per layer (reference, section 5).
    expected = [(0.0317, 0.7250), (0.0302, 0.8423), (0.0781, 0.9403), (0.1225, 0.9772), (0.1920, 0.9973),
                (0.3012, 0.9989)]
    for i, (first, last) in enumerate(expected):
        w = np.exp(-np.exp(params[f"blocks.{i}.att.time_decay"].numpy().ravel()))
        assert w[0] == pytest.approx(first, abs=1e-4) and w[-1] == pytest.approx(last, abs=1e-4)


@pytest.mark.parametrize("variant", ["RWKV", "RWKV-ffnPre"])
def test_parallel_step_chunked_and_both_kernels_agree(variant):
    model = perturbed_model(variant=variant)
    ids = paddle.randint(0, 37, [2, 24])
    parallel = model(ids).logits.numpy()
    np.testing.assert_allclose(logits_step_by_step(model, ids), parallel, atol=1e-5)
    np.testing.assert_allclose(logits_in_chunks(model, ids, [1, 7, 20])[0], parallel, atol=1e-5)
    set_kernel(model, "timex")
    np.testing.assert_allclose(model(ids).logits.numpy(), parallel, atol=1e-5)
    np.testing.assert_allclose(logits_step_by_step(model, ids), parallel, atol=1e-5)
    np.testing.assert_allclose(logits_in_chunks(model, ids, [5, 6, 11])[0], parallel, atol=1e-5)


def test_states_carry_between_kernels():
    model = perturbed_model(1)
    ids = paddle.randint(0, 37, [3, 24])
    parallel = model(ids).logits.numpy()
    first = model(ids[:, :10], use_cache=True)
    set_kernel(model, "timex")
    second = model(ids[:, 10:], state=first.state, use_cache=True)
    np.testing.assert_allclose(second.logits.numpy(), parallel[:, 10:], atol=1e-5)


def test_sequences_longer_than_ctx_len_keep_a_sliding_copy_window():
    # With the WKV kernel the model runs past ctx_len; the copy head then sees the last ctx_len tokens, in every mode.
    model = perturbed_model(2, ctx_len=8)
    ids = paddle.randint(0, 37, [2, 30])
    parallel = model(ids).logits.numpy()
    np.testing.assert_allclose(logits_step_by_step(model, ids), parallel, atol=1e-5)
    np.testing.assert_allclose(logits_in_chunks(model, ids, [3, 13, 14])[0], parallel, atol=1e-5)
    set_kernel(model, "timex")
    with pytest.raises(ValueError, match="at most ctx_len=8 tokens per call, got 30"):
        model(ids)


def test_copy_head_matters_and_repeats_get_the_bonus():
    model = perturbed_model(3)
    ids = paddle.to_tensor([[5, 9, 5, 9, 5]])
    with_head = model(ids).logits.numpy()
    model.head_q.weight.set_value(paddle.zeros_like(model.head_q.weight))
    without = model(ids).logits.numpy()
    diff = np.abs(with_head - without)
    # The bonus lands only on tokens seen so far (ids 5 and 9), never on others.
    assert diff[0, :, [5, 9]].max() > 1e-3
    assert diff[0][:, [i for i in range(37) if i not in (5, 9)]].max() == 0


def test_gradients_flow_to_every_parameter():
    model = perturbed_model(4)
    model.train()
    ids = paddle.randint(0, 37, [2, 12])
    model(ids).logits.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


def test_save_and_load_round_trip(tmp_path):
    model = perturbed_model(5, variant="RWKV-ffnPre", time_mix_kernel="timex")
    ids = paddle.randint(0, 37, [1, 20])
    model.save_pretrained(str(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["model_type"] == "rwkv2"
    for loaded in (RWKV2ForCausalLM.from_pretrained(str(tmp_path)), AutoModelForCausalLM.from_pretrained(str(tmp_path))):
        assert isinstance(loaded, RWKV2ForCausalLM) and loaded.config.to_dict() == model.config.to_dict()
        np.testing.assert_array_equal(loaded(ids).logits.numpy(), model(ids).logits.numpy())
    assert isinstance(AutoConfig.from_pretrained(str(tmp_path)), RWKV2Config)


def test_unknown_config_fields_are_kept_from_files_and_refused_as_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['n_layers'\]"):
        RWKV2Config(n_layers=3)
    RWKV2Config(vocab_size=5, n_embd=8, n_layer=1, ctx_len=4).save_pretrained(str(tmp_path))
    data = json.load(open(tmp_path / "config.json"))
    data["written_by"] = "another tool"
    json.dump(data, open(tmp_path / "config.json", "w"))
    config = RWKV2Config.from_pretrained(str(tmp_path))
    assert config.extra == {"written_by": "another tool"} and config.to_dict()["written_by"] == "another tool"


@pytest.mark.parametrize("field,value", [("n_layer", 0), ("n_embd", -1), ("vocab_size", 2.5), ("variant", "RWKV-4"),
                                         ("time_mix_kernel", "cuda")])
def test_bad_config_values(field, value):
    with pytest.raises(ValueError, match=field):
        RWKV2Config(**{field: value})


def test_bad_model_directories(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(ModelFileError, match="has no config.json"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelFileError, match="model_type 'llama'; paddle_lrnn knows"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    model = perturbed_model(6)
    model.save_pretrained(str(tmp_path))
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="has no model.safetensors"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))
    small = RWKV2ForCausalLM(RWKV2Config(vocab_size=37, n_embd=16, n_layer=3, ctx_len=24))
    small.save_pretrained(str(tmp_path))
    data = json.load(open(tmp_path / "config.json"))
    data["n_embd"] = 32
    json.dump(data, open(tmp_path / "config.json", "w"))
    with pytest.raises(ModelFileError, match=r"weight emb.weight has shape \[37, 16\], but the model needs \[37, 32\]"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))


def test_bad_input_ids():
    model = perturbed_model(7)
    with pytest.raises(ValueError, match=r"token id 37 is outside the vocabulary \[0, 37\)"):
        model(paddle.to_tensor([[1, 37]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(paddle.to_tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        model(paddle.to_tensor([1, 2]))
    with pytest.raises(TypeError, match="int64 or int32"):
        model(paddle.to_tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="empty"):
        model(paddle.zeros([1, 0], "int64"))
    state = model(paddle.to_tensor([[1, 2]]), use_cache=True).state
    with pytest.raises(ValueError, match="state is for batch size 1, input_ids has batch size 2"):
        model(paddle.to_tensor([[1], [2]]), state=state)
