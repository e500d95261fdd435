"""RWKV4ForCausalLM: the original's parameter names, count and initialisation, every mode giving the same logits and
state (parallel, one token at a time, chunks with the state), a NumPy transcription of the original's RNN step,
the L2Wrap training term, save/load through the Auto classes, and bad input."""
import json
import math

import numpy as np
import paddle
import pytest
from helpers import logits_in_chunks, off_init

from paddle_lrnn.models import AutoConfig, AutoModelForCausalLM, ModelFileError
from paddle_lrnn.models.modeling_utils import skip_init
from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM

SMALL = dict(vocab_size=37, n_embd=32, n_layer=3, ctx_len=16)


def perturbed_model(seed=0, **config):
    """A small model moved off its initialisation (zero matrices and smooth ramps would hide mistakes)."""
    paddle.seed(seed)
    return off_init(RWKV4ForCausalLM(RWKV4Config(**{**SMALL, **config})), 0.2)


def test_the_169m_layout_has_the_released_names_shapes_and_count():
    with paddle.LazyGuard(), skip_init():  # shapes only: no memory, no initialisation
        model = RWKV4ForCausalLM(RWKV4Config())
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
    # RWKV-4-Pile-169M: 12 layers x 768, vocabulary 50277; 2VC + L(13C^2 + 11C) + 4C parameters
    V, C, L = 50277, 768, 12
    assert model.num_parameters() == 2 * V * C + L * (13 * C * C + 11 * C) + 4 * C == 169_342_464
    assert len(shapes) == 1 + 2 + L * 18 + 2 + 1  # emb, ln0, 18 tensors per block, ln_out, head
    assert shapes["blocks.0.ln0.weight"] == [C] and "blocks.1.ln0.weight" not in shapes
    assert shapes["blocks.3.att.time_decay"] == [C] and shapes["blocks.3.att.time_mix_v"] == [1, 1, C]
    assert shapes["blocks.3.ffn.key.weight"] == [C, 4 * C] and shapes["head.weight"] == [C, V]
    names = [n for n in shapes if n.startswith("blocks.0.")]
    assert names[:6] == ["blocks.0.ln1.weight", "blocks.0.ln1.bias", "blocks.0.ln2.weight", "blocks.0.ln2.bias",
                         "blocks.0.ln0.weight", "blocks.0.ln0.bias"]  # the original's state-dict order


def test_initialisation_is_the_originals():
    paddle.seed(0)
    C, L, V = 64, 4, 300
    model = RWKV4ForCausalLM(RWKV4Config(vocab_size=V, n_embd=C, n_layer=L))
    params = {name: p.numpy().astype(np.float64) for name, p in model.named_parameters()}
    rms = {name: float(np.sqrt(np.mean(p ** 2))) for name, p in params.items()}
    assert rms["emb.weight"] == pytest.approx(1e-4, rel=0.02)  # orthogonal, gain sqrt(V) * 1e-4
    assert rms["head.weight"] == pytest.approx(0.5 / math.sqrt(C), rel=0.02)  # [V, C]: 0.5 * sqrt(V / C)
    head = params["head.weight"]  # [C, V]: orthonormal rows scaled by 0.5 sqrt(V / C)
    np.testing.assert_allclose(head @ head.T, np.eye(C) * 0.25 * V / C, atol=1e-5)
    ramp = np.arange(C) / C
    h = np.arange(C) / (C - 1)
    zigzag = np.array([((i + 1) % 3 - 1) * 0.5 for i in range(C)])
    for i in range(L):
        b = f"blocks.{i}."
        assert rms[b + "att.value.weight"] == pytest.approx(1 / math.sqrt(C), rel=0.02)
        assert rms[b + "ffn.key.weight"] == pytest.approx(1 / math.sqrt(C), rel=0.02)  # gain 2 over 4C rows
        for zero in ("att.key", "att.receptance", "att.output", "ffn.receptance", "ffn.value"):
            assert rms[f"{b}{zero}.weight"] == 0
        r01, r10 = i / (L - 1), 1 - i / L
        np.testing.assert_allclose(params[b + "att.time_decay"], -5 + 8 * h ** (0.7 + 1.3 * r01), atol=1e-6)
        np.testing.assert_allclose(params[b + "att.time_first"], math.log(0.3) + zigzag, atol=1e-6)
        np.testing.assert_allclose(params[b + "att.time_mix_k"].ravel(), ramp ** r10, atol=1e-6)
        np.testing.assert_allclose(params[b + "att.time_mix_v"].ravel(), ramp ** r10 + 0.3 * r01, atol=1e-6)
        np.testing.assert_allclose(params[b + "att.time_mix_r"].ravel(), ramp ** (0.5 * r10), atol=1e-6)
        for mix in ("ffn.time_mix_k", "ffn.time_mix_r"):
            np.testing.assert_allclose(params[b + mix].ravel(), ramp ** r10, atol=1e-6)
    # the decay at the first and last channel of the first layer: exp(-exp(-5)) and exp(-exp(3))
    w = np.exp(-np.exp(params["blocks.0.att.time_decay"]))
    assert w[0] == pytest.approx(0.99329, abs=1e-5) and w[-1] == pytest.approx(1.9e-9, rel=0.02)


def test_skip_init_leaves_the_initialisation_to_loaded_weights():
    with skip_init():
        skipped = RWKV4ForCausalLM(RWKV4Config(**SMALL))
    assert float(skipped.blocks[1].att.time_decay.abs().max()) == 0  # not the decay curve
    assert float(RWKV4ForCausalLM(RWKV4Config(**SMALL)).blocks[1].att.time_decay.abs().max()) > 1


def test_ffn_pre_variant_replaces_block_0_time_mix():
    model = RWKV4ForCausalLM(RWKV4Config(**SMALL, variant="RWKV-ffnPre"))
    names = {n for n, _ in model.named_parameters()}
    assert "blocks.0.ffnPre.key.weight" in names and not any(n.startswith("blocks.0.att.") for n in names)
    assert float(model.blocks[0].ffnPre.value.weight.abs().max()) == 0  # zero-initialised as the original's
    ramp = np.arange(32) / 32
    np.testing.assert_allclose(model.blocks[0].ffnPre.time_mix_k.numpy().ravel(), ramp, atol=1e-6)


@pytest.mark.parametrize("variant", ["RWKV", "RWKV-ffnPre"])
def test_parallel_step_and_chunks_agree(variant):
    model = perturbed_model(variant=variant)
    ids = paddle.randint(0, 37, [2, 40])  # past ctx_len: the model runs any length
    parallel = model(ids, use_cache=True)
    expected = parallel.logits.numpy()
    for cuts in ([1, 7, 20], list(range(1, 40))):
        logits, state = logits_in_chunks(model, ids, cuts)
        np.testing.assert_allclose(logits, expected, atol=1e-5)
        for key in state:
            np.testing.assert_allclose(state[key].numpy(), parallel.state[key].numpy(), rtol=1e-5, atol=1e-5)


def test_state_layout():
    model = perturbed_model(1, dim_att=16, dim_ffn=48)
    state = model(paddle.randint(0, 37, [3, 5]), use_cache=True).state
    assert {k: list(v.shape) for k, v in state.items()} == {"wkv": [3, 3, 3, 16], "att_shift": [3, 3, 32],
                                                           "ffn_shift": [3, 3, 32]}
    assert state["wkv"].dtype == paddle.float32


def numpy_rnn(model, tokens):
    """RWKV-LM's RWKV_RNN (RWKV-v4/src/model_run.py) transcribed to NumPy in float64: one token per step, the
    time-decay as -exp(time_decay), the WKV sums as (aa, bb, pp) starting from pp = -1e30."""
    w = {n: p.numpy().astype(np.float64) for n, p in model.named_parameters()}
    C, L = model.config.n_embd, model.config.n_layer
    ffn_pre = model.config.variant == "RWKV-ffnPre"

    def ln(x, name):
        return (x - x.mean()) / np.sqrt(x.var() + 1e-5) * w[name + ".weight"] + w[name + ".bias"]

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    xx = {}
    aa, bb, pp = {}, {}, {}
    rows = []
    for token in tokens:
        x = ln(w["emb.weight"][token], "blocks.0.ln0")
        for i in range(L):
            b = f"blocks.{i}."
            h = ln(x, b + "ln1")
            if ffn_pre and i == 0:
                p = b + "ffnPre."
                prev = xx.get("pre", np.zeros(C))
                xk = h * w[p + "time_mix_k"].ravel() + prev * (1 - w[p + "time_mix_k"].ravel())
                xr = h * w[p + "time_mix_r"].ravel() + prev * (1 - w[p + "time_mix_r"].ravel())
                xx["pre"] = h
                x = x + sigmoid(xr @ w[p + "receptance.weight"]) * (
                    np.maximum(xk @ w[p + "key.weight"], 0) ** 2 @ w[p + "value.weight"])
            else:
                p = b + "att."
                prev = xx.get(f"att{i}", np.zeros(C))
                mix = {m: h * w[p + f"time_mix_{m}"].ravel() + prev * (1 - w[p + f"time_mix_{m}"].ravel())
                       for m in "kvr"}
                xx[f"att{i}"] = h
                r = sigmoid(mix["r"] @ w[p + "receptance.weight"])
                k, v = mix["k"] @ w[p + "key.weight"], mix["v"] @ w[p + "value.weight"]
                a0, b0, p0 = aa.get(i, 0.0), bb.get(i, 0.0), pp.get(i, -1e30)
                ww = w[p + "time_first"] + k
                q = np.maximum(p0, ww)
                e1, e2 = np.exp(p0 - q), np.exp(ww - q)
                y = (e1 * a0 + e2 * v) / (e1 * b0 + e2)
                ww = p0 - np.exp(w[p + "time_decay"])
                q = np.maximum(ww, k)
                e1, e2 = np.exp(ww - q), np.exp(k - q)
                aa[i], bb[i], pp[i] = e1 * a0 + e2 * v, e1 * b0 + e2, q
                x = x + (r * y) @ w[p + "output.weight"]
            h = ln(x, b + "ln2")
            p = b + "ffn."
            prev = xx.get(f"ffn{i}", np.zeros(C))
            xk = h * w[p + "time_mix_k"].ravel() + prev * (1 - w[p + "time_mix_k"].ravel())
            xr = h * w[p + "time_mix_r"].ravel() + prev * (1 - w[p + "time_mix_r"].ravel())
            xx[f"ffn{i}"] = h
            x = x + sigmoid(xr @ w[p + "receptance.weight"]) * (
                np.maximum(xk @ w[p + "key.weight"], 0) ** 2 @ w[p + "value.weight"])
        rows.append(ln(x, "ln_out") @ w["head.weight"])
    return np.stack(rows), (aa, bb, pp)


@pytest.mark.parametrize("variant", ["RWKV", "RWKV-ffnPre"])
def test_matches_a_numpy_transcription_of_the_original_rnn(variant):
    model = perturbed_model(2, variant=variant)
    tokens = np.random.default_rng(0).integers(0, 37, 25)
    expected, (aa, bb, pp) = numpy_rnn(model, tokens)
    out = model(paddle.to_tensor(tokens[None]), use_cache=True)
    np.testing.assert_allclose(out.logits.numpy()[0], expected, atol=1e-4)
    wkv = out.state["wkv"].numpy()[:, 0]
    for i in aa:
        np.testing.assert_allclose(wkv[i], np.stack([aa[i], bb[i], pp[i]]), rtol=1e-4, atol=1e-4)


def test_time_mix_uses_the_previous_token_per_projection():
    """Each of k, v, r has its own mix: a model whose k mixes take only the previous token gives other logits than
    one whose r mixes do (RWKV-v2 had a single mix per sub-layer)."""
    model = perturbed_model(3)
    ids = paddle.randint(0, 37, [1, 8])
    base = model(ids).logits.numpy()
    changed = []
    for name in ("time_mix_k", "time_mix_v", "time_mix_r"):
        param = getattr(model.blocks[1].att, name)
        saved = param.numpy()
        param.set_value(paddle.zeros_like(param))
        changed.append(model(ids).logits.numpy())
        param.set_value(paddle.to_tensor(saved))
    for logits in changed:
        assert np.abs(logits - base).max() > 1e-3
    assert np.abs(changed[0] - changed[2]).max() > 1e-3


def test_gradients_flow_to_every_parameter():
    model = perturbed_model(4, variant="RWKV-ffnPre")
    model.train()
    ids = paddle.randint(0, 37, [2, 12])
    model(ids).logits.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


def test_l2wrap_term_is_zero_and_pulls_the_top_logit_down():
    """RWKV-4's L2Wrap: no change to the loss value; gradient 1e-4 / (B T) x max logit at the argmax only."""
    logits = paddle.to_tensor(np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32"), stop_gradient=False)
    term = RWKV4ForCausalLM.loss_penalty(logits)
    assert float(term) == 0.0
    term.backward()
    values = logits.numpy()
    expected = np.zeros_like(values)
    for b in range(2):
        for t in range(3):
            j = values[b, t].argmax()
            expected[b, t, j] = 1e-4 / 6 * values[b, t, j]
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-6, atol=1e-12)


def test_save_and_load_round_trip(tmp_path):
    model = perturbed_model(5, variant="RWKV-ffnPre", dim_ffn=80)
    ids = paddle.randint(0, 37, [1, 20])
    model.save_pretrained(str(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["model_type"] == "rwkv4"
    for loaded in (RWKV4ForCausalLM.from_pretrained(str(tmp_path)),
                   AutoModelForCausalLM.from_pretrained(str(tmp_path))):
        assert isinstance(loaded, RWKV4ForCausalLM) and loaded.config.to_dict() == model.config.to_dict()
        np.testing.assert_array_equal(loaded(ids).logits.numpy(), model(ids).logits.numpy())
    assert isinstance(AutoConfig.from_pretrained(str(tmp_path)), RWKV4Config)
    data = json.load(open(tmp_path / "config.json"))
    data["n_embd"] = 16
    json.dump(data, open(tmp_path / "config.json", "w"))
    with pytest.raises(ModelFileError, match=r"weight emb.weight has shape \[37, 32\], but the model needs \[37, 16\]"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("field,value", [("n_layer", 0), ("n_embd", -1), ("vocab_size", 2.5), ("variant", "RWKV-5"),
                                         ("dim_att", 0), ("dim_ffn", "wide")])
def test_bad_config_values(field, value):
    with pytest.raises(ValueError, match=field):
        RWKV4Config(**{field: value})


def test_bad_input_ids_and_states():
    model = perturbed_model(7)
    with pytest.raises(ValueError, match=r"token id 37 is outside the vocabulary \[0, 37\)"):
        model(paddle.to_tensor([[1, 37]]))
    with pytest.raises(ValueError, match="2-D"):
        model(paddle.to_tensor([1, 2]))
    state = model(paddle.to_tensor([[1, 2]]), use_cache=True).state
    with pytest.raises(ValueError, match=r"state\['wkv'\] has shape \[3, 1, 3, 32\], expected \[3, 2, 3, 32\]"):
        model(paddle.to_tensor([[1], [2]]), state=state)
    with pytest.raises(ValueError, match="state must be the dict an earlier call returned"):
        model(paddle.to_tensor([[1]]), state={"wkv": state["wkv"]})
