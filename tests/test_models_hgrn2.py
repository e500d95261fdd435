"""HGRN2ForCausalLM and its layers: the config's num_heads / expand_ratio resolution and MLP width rule (fla's), the
lower bounds, the attention layer against an independent float64 numpy implementation of the paper's recurrence
(with and without the short convolution), every mode giving the same logits (parallel, one token at a time, chunks
with the state), initialisation, save/load, Auto dispatch, gradients, and bad input."""
import math

import numpy as np
import paddle
import pytest
from helpers import logits_in_chunks, off_init, random_ids

from paddle_lrnn.layers.hgrn2 import HGRN2Attention, bounded_log_forget_gate, logaddexp
from paddle_lrnn.layers.mlp import GatedMLP, gated_mlp_intermediate_size
from paddle_lrnn.models import AutoConfig, AutoModelForCausalLM, ModelFileError
from paddle_lrnn.models.hgrn2 import HGRN2Config, HGRN2ForCausalLM

SMALL = dict(vocab_size=41, hidden_size=32, num_hidden_layers=3, expand_ratio=8)


def perturbed_model(seed=0, **config):
    """A small model moved off its initialisation (unit norms and zero lower bounds would hide mistakes)."""
    paddle.seed(seed)
    model = HGRN2ForCausalLM(HGRN2Config(**{**SMALL, **config}))
    return off_init(model, lambda name: 1.0 if "lower_bounds" in name else 0.1)


# ------------------------------------------------------------------------------------------------------------ config
def test_config_defaults_are_fla_s():
    cfg = HGRN2Config()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.expand_ratio, cfg.num_heads) == (2048, 24, 128, 16)
    assert (cfg.norm_eps, cfg.hidden_ratio, cfg.intermediate_size, cfg.vocab_size) == (1e-6, 4, None, 32000)
    assert cfg.use_lower_bound and not cfg.use_short_conv and not cfg.tie_word_embeddings
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.initializer_range) == (1, 2, None, 0.02)
    assert cfg.to_dict()["model_type"] == "hgrn2"


def test_num_heads_and_expand_ratio_resolve_as_in_fla():
    cfg = HGRN2Config(hidden_size=96, expand_ratio=24)
    assert (cfg.num_heads, cfg.expand_ratio, cfg.layer_heads) == (4, 24, (4, 24))
    cfg = HGRN2Config(hidden_size=96, expand_ratio=None, num_heads=3)
    assert (cfg.num_heads, cfg.expand_ratio, cfg.layer_heads) == (3, 32, (3, 32))
    # both given: both kept, the layers follow expand_ratio (fla's rule)
    cfg = HGRN2Config(hidden_size=96, expand_ratio=24, num_heads=3, use_lower_bound=True)
    assert (cfg.num_heads, cfg.expand_ratio, cfg.layer_heads) == (3, 24, (4, 24))
    attn = HGRN2ForCausalLM(HGRN2Config(**{**SMALL, "hidden_size": 96, "expand_ratio": 24, "num_heads": 3})) \
        .model.layers[0].attn
    assert (attn.num_heads, attn.head_k_dim, attn.head_v_dim) == (4, 24, 24)
    # num_heads alone does not win over the default expand_ratio 128: fla needs expand_ratio=None for that
    with pytest.raises(ValueError, match="expand_ratio 128 is larger than hidden_size 96"):
        HGRN2Config(hidden_size=96, num_heads=4)
    with pytest.raises(ValueError, match="one of expand_ratio or num_heads"):
        HGRN2Config(hidden_size=96, expand_ratio=None)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        HGRN2Config(hidden_size=96, expand_ratio=None, num_heads=5)
    with pytest.raises(ValueError, match="must equal hidden_size"):  # 100 // 24 = 4 heads: forget dim 96 != 100
        HGRN2Config(hidden_size=100, expand_ratio=24)


def test_forget_dim_may_differ_from_hidden_size_without_lower_bounds():
    model = perturbed_model(hidden_size=100, expand_ratio=24, use_lower_bound=False)
    attn = model.model.layers[0].attn
    assert (attn.num_heads, attn.head_k_dim, attn.head_v_dim, attn.forget_dim) == (4, 24, 25, 96)
    ids = random_ids(1, 9, SMALL["vocab_size"])
    np.testing.assert_allclose(logits_in_chunks(model, ids, [4])[0], model(ids).logits.numpy(), atol=1e-5)


def test_bad_config_values():
    for bad, match in [(dict(attn={"layers": [0], "num_heads": 2}), "hybrid softmax-attention"),
                       (dict(hidden_act="gelu"), "hidden_act"), (dict(attn_mode="fused_chunk"), "attn_mode"),
                       (dict(num_hidden_layers=0), "num_hidden_layers"), (dict(foo=1), "unknown field"),
                       (dict(fuse_cross_entropy=True, fuse_linear_cross_entropy=True), "cannot both")]:
        with pytest.raises((ValueError, TypeError), match=match):
            HGRN2Config(**{**SMALL, **bad})


@pytest.mark.parametrize("hidden,expected", [(512, 1536), (1024, 2816), (2048, 5632), (96, 256)])
def test_mlp_width_rule(hidden, expected):
    assert gated_mlp_intermediate_size(hidden, 4, None) == expected
    assert HGRN2Config(hidden_size=hidden, expand_ratio=32).mlp_intermediate_size == expected


def test_mlp_explicit_width_and_swiglu():
    assert gated_mlp_intermediate_size(512, 4, 1000) == 1000
    paddle.seed(3)
    mlp = GatedMLP(8, intermediate_size=12)
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    gate = x @ mlp.gate_proj.weight.numpy()
    want = (gate / (1 + np.exp(-gate)) * (x @ mlp.up_proj.weight.numpy())) @ mlp.down_proj.weight.numpy()
    np.testing.assert_allclose(mlp(paddle.to_tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_parameter_count_and_names():
    D, L, V, I = 32, 3, 41, 256
    model = HGRN2ForCausalLM(HGRN2Config(**SMALL))
    assert model.num_parameters() == 2 * V * D + L * (4 * D * D + 3 * D * I + 3 * D) + L * D + D
    tied = HGRN2ForCausalLM(HGRN2Config(**SMALL, tie_word_embeddings=True))
    assert tied.num_parameters() == model.num_parameters() - V * D and "lm_head.weight" not in dict(
        tied.named_parameters())
    names = set(dict(HGRN2ForCausalLM(HGRN2Config(**SMALL, use_short_conv=True)).named_parameters()))
    for sub in ("attn_norm", "attn.q_proj", "attn.f_proj", "attn.i_proj", "attn.o_proj", "attn.g_norm",
                "attn.q_conv1d", "attn.f_conv1d", "attn.i_conv1d", "mlp_norm", "mlp.gate_proj", "mlp.up_proj",
                "mlp.down_proj"):
        assert f"model.layers.2.{sub}.weight" in names
    assert {"model.embeddings.weight", "model.lower_bounds", "model.norm.weight", "lm_head.weight"} <= names


def test_initialisation_is_fla_s():
    paddle.seed(0)
    model = HGRN2ForCausalLM(HGRN2Config(vocab_size=300, hidden_size=128, num_hidden_layers=2, expand_ratio=32,
                                         use_short_conv=True))
    for name, p in model.named_parameters():
        value = p.numpy()
        if "norm" in name:
            assert np.all(value == 1), name
        elif "lower_bounds" in name:
            assert np.all(value == 0)
        else:
            assert abs(value.std() - 0.02) < 0.002 and abs(value.mean()) < 0.002, name


# ------------------------------------------------------------------------------------------------------ lower bounds
def lower_bounds_tolerance(L):
    """Bound on the float32 error of beta = cumsum(softmax(.)) - its first row, values in [0, 1], on any CPU:
    Paddle's vectorised exp within 4 ulp (8 u, u = 2^-24 the unit roundoff), the softmax's sum of L terms L u and its
    division u, the cumsum L u, the subtraction u."""
    return (8 + 2 * L + 2) * 2.0 ** -24


def test_lower_bounds_at_init_are_l_over_L_and_layer_0_is_unbounded():
    model = HGRN2ForCausalLM(HGRN2Config(**{**SMALL, "num_hidden_layers": 5}))
    beta = model.model.layer_lower_bounds().numpy()
    np.testing.assert_allclose(beta, np.repeat((np.arange(5) / 5)[:, None], 32, 1), rtol=0,
                               atol=lower_bounds_tolerance(5))
    assert np.all(beta[0] == 0)


def test_lower_bounds_formula():
    model = perturbed_model()
    lb = model.model.lower_bounds.numpy().astype(np.float64)
    p = np.exp(lb - lb.max(0)) / np.exp(lb - lb.max(0)).sum(0)
    want = np.cumsum(p, 0) - p[0]
    np.testing.assert_allclose(model.model.layer_lower_bounds().numpy(), want, rtol=0,
                               atol=lower_bounds_tolerance(len(lb)))
    assert np.all(want[1:] > 0) and np.all(want < 1) and np.all(np.diff(want, axis=0) > 0)
    assert HGRN2ForCausalLM(HGRN2Config(**SMALL, use_lower_bound=False)).model.layer_lower_bounds() is None


def test_layer_0_ignores_a_lower_bound():
    paddle.seed(2)
    x = paddle.randn([2, 5, 32])
    beta = paddle.full([32], 0.7)
    first, later = HGRN2Attention(32, expand_ratio=8, layer_idx=0), HGRN2Attention(32, expand_ratio=8, layer_idx=1)
    later.set_state_dict(first.state_dict())
    np.testing.assert_array_equal(first(x, lower_bound=beta)[0].numpy(), first(x)[0].numpy())
    assert np.abs(later(x, lower_bound=beta)[0].numpy() - first(x)[0].numpy()).max() > 1e-3


def test_bounded_gate_in_log_space():
    f = np.array([-80.0, -20.0, -3.0, 0.0, 2.0, 15.0, 40.0], np.float32)
    for beta in (0.0, 1e-30, 0.3, 0.999):
        got = bounded_log_forget_gate(paddle.to_tensor(f), paddle.full([7], beta)).numpy().astype(np.float64)
        sig = 1 / (1 + np.exp(-f.astype(np.float64)))
        b = float(np.float32(beta))  # the float32 bound the layer sees
        want = np.log(b + (1 - b) * sig)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        assert np.all(got <= 0)
    # k = 1 - exp(g) stays accurate where the gate is near 1 (g -> 0): logsigmoid and -expm1 without cancellation
    fx = paddle.to_tensor(f, stop_gradient=False)
    g = bounded_log_forget_gate(fx)
    k = (-paddle.expm1(g)).numpy().astype(np.float64)
    np.testing.assert_allclose(k, 1 / (1 + np.exp(f.astype(np.float64))), rtol=1e-5)
    (grad,) = paddle.grad(g.sum(), [fx])  # d logsigmoid(f) / df = sigmoid(-f)
    np.testing.assert_allclose(grad.numpy(), 1 / (1 + np.exp(f.astype(np.float64))), rtol=1e-5)


def test_logaddexp_has_finite_gradients_at_minus_infinity():
    a = paddle.to_tensor([-np.inf, -2.0, 0.5], stop_gradient=False)
    b = paddle.to_tensor([-1.0, -np.inf, 0.25], stop_gradient=False)
    y = logaddexp(a, b)
    np.testing.assert_allclose(y.numpy(), np.logaddexp([-np.inf, -2.0, 0.5], [-1.0, -np.inf, 0.25]), rtol=1e-6)
    ga, gb = paddle.grad(y.sum(), [a, b])
    np.testing.assert_allclose(ga.numpy(), [0, 1, 1 / (1 + math.exp(-0.25))], rtol=1e-6)
    np.testing.assert_allclose(gb.numpy(), [1, 0, 1 / (1 + math.exp(0.25))], rtol=1e-6)


# --------------------------------------------------------------------------------------- layer vs a numpy spec
def numpy_hgrn2_attention(layer, x, beta=None, state=None):
    """HGRN2's token mixer written out in float64 numpy from the paper's recurrence (per head h_t = diag(f_t)
    h_{t-1} + (1 - f_t) i_t^T, y_t = o_t h_t) with fla's choices (swish output gate, o scaled by K^-0.5, RMSNorm of
    eps 1e-5 over all channels); independent of the layer's code path. Returns (out, final states)."""
    W = {k: v.numpy().astype(np.float64) for k, v in layer.state_dict().items()}
    B, T, D = x.shape
    H, K, V = layer.num_heads, layer.head_k_dim, layer.head_v_dim
    q, f, i = x @ W["q_proj.weight"], x @ W["f_proj.weight"], x @ W["i_proj.weight"]
    caches = {}
    if layer.use_short_conv:
        out = []
        for name, h in (("q", q), ("f", f), ("i", i)):
            w = W[f"{name}_conv1d.weight"]  # [C, L]
            L = w.shape[1]
            prev = np.zeros((B, L, h.shape[2])) if state is None else state[f"conv_{name}"].transpose(0, 2, 1)
            full = np.concatenate([prev, h], axis=1)  # the last L inputs before the chunk, then the chunk
            out.append(np.stack([(full[:, t + 1:t + 1 + L] * w.T).sum(1) for t in range(T)], 1))
            caches[f"conv_{name}"] = full[:, -L:].transpose(0, 2, 1)
        q, f, i = out
    o_gate = q / (1 + np.exp(-q))
    lam = 1 / (1 + np.exp(-f))
    if beta is not None:
        lam = beta + (1 - beta) * lam
    S = np.zeros((B, H, K, V)) if state is None else state["recurrent"].astype(np.float64)
    ys = []
    for t in range(T):
        ft, ot = lam[:, t].reshape(B, H, K), o_gate[:, t].reshape(B, H, K)
        S = ft[..., None] * S + (1 - ft)[..., None] * i[:, t].reshape(B, H, 1, V)
        ys.append(np.einsum("bhk,bhkv->bhv", ot * K ** -0.5, S).reshape(B, H * V))
    y = np.stack(ys, 1)
    y = y / np.sqrt((y ** 2).mean(-1, keepdims=True) + 1e-5) * W["g_norm.weight"]
    return y @ W["o_proj.weight"], dict(recurrent=S, **caches)


@pytest.mark.parametrize("short_conv", [False, True])
def test_attention_layer_matches_the_numpy_spec_with_state(short_conv):
    paddle.seed(5)
    layer = HGRN2Attention(24, expand_ratio=6, use_short_conv=short_conv, conv_size=3, layer_idx=1)
    for _, p in layer.named_parameters():
        p.set_value(p + paddle.randn(p.shape) * 0.3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 24)).astype(np.float32)
    beta = rng.uniform(0.1, 0.9, 24).astype(np.float32)
    want1, st = numpy_hgrn2_attention(layer, x[:, :7].astype(np.float64), beta)
    want2, st2 = numpy_hgrn2_attention(layer, x[:, 7:].astype(np.float64), beta, st)
    got1, s = layer(paddle.to_tensor(x[:, :7]), paddle.to_tensor(beta), use_cache=True)
    got2, s2 = layer(paddle.to_tensor(x[:, 7:]), paddle.to_tensor(beta), state=s, use_cache=True)
    scale = np.abs(want1).max()
    np.testing.assert_allclose(got1.numpy(), want1, atol=2e-5 * scale)
    np.testing.assert_allclose(got2.numpy(), want2, atol=2e-5 * scale)
    assert set(s2) == set(st2)
    for key in st2:
        np.testing.assert_allclose(s2[key].numpy(), st2[key], atol=2e-5 * np.abs(st2[key]).max(), err_msg=key)


# ---------------------------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("options", [dict(), dict(use_short_conv=True, conv_size=4), dict(tie_word_embeddings=True),
                                     dict(use_lower_bound=False, elementwise_affine=False)])
def test_parallel_step_and_chunks_agree(options):
    model = perturbed_model(**options)
    ids = random_ids(2, 70, SMALL["vocab_size"])
    parallel = model(ids).logits.numpy()
    assert parallel.dtype == np.float32 and parallel.shape == (2, 70, SMALL["vocab_size"])
    chunks, state = logits_in_chunks(model, ids, [1, 17, 65, 66])
    steps, state_steps = logits_in_chunks(model, ids, list(range(1, 70)))
    np.testing.assert_allclose(chunks, parallel, atol=1e-5)
    np.testing.assert_allclose(steps, parallel, atol=1e-5)
    whole = model(ids, use_cache=True).state
    for key in whole:
        np.testing.assert_allclose(state[key].numpy(), whole[key].numpy(), atol=1e-5, err_msg=key)
        np.testing.assert_allclose(state_steps[key].numpy(), whole[key].numpy(), atol=1e-5, err_msg=key)


def test_state_layout():
    model = perturbed_model(use_short_conv=True, conv_size=3)
    state = model(random_ids(2, 5, SMALL["vocab_size"]), use_cache=True).state
    assert {k: list(v.shape) for k, v in state.items()} == {
        "recurrent": [3, 2, 4, 8, 8], "conv_q": [3, 2, 32, 3], "conv_f": [3, 2, 32, 3], "conv_i": [3, 2, 32, 3]}
    assert all(v.dtype == paddle.float32 for v in state.values())
    zero = model.initial_state(2)
    assert {k: list(v.shape) for k, v in zero.items()} == {k: list(v.shape) for k, v in state.items()}
    ids = random_ids(2, 6, SMALL["vocab_size"])
    np.testing.assert_array_equal(model(ids, state=zero).logits.numpy(), model(ids).logits.numpy())
    assert model(ids).state is None


def test_gradients_reach_every_parameter():
    model = perturbed_model(use_short_conv=True)
    model.train()
    ids = random_ids(2, 20, SMALL["vocab_size"])
    logits = model(ids[:, :-1]).logits
    loss = paddle.nn.functional.cross_entropy(logits.reshape([-1, logits.shape[-1]]), ids[:, 1:].reshape([-1]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), name
        assert np.abs(p.grad.numpy()).max() > 0, name


# ----------------------------------------------------------------------------------------------------- save / load
def test_save_load_and_auto_dispatch(tmp_path):
    model = perturbed_model(use_short_conv=True, tie_word_embeddings=True)
    model.save_pretrained(str(tmp_path))
    assert AutoConfig.from_pretrained(str(tmp_path)).to_dict() == model.config.to_dict()
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert isinstance(loaded, HGRN2ForCausalLM)
    ids = random_ids(2, 12, SMALL["vocab_size"])
    np.testing.assert_array_equal(loaded(ids).logits.numpy(), model(ids).logits.numpy())
    assert isinstance(AutoModelForCausalLM.from_config(HGRN2Config(**SMALL)), HGRN2ForCausalLM)


def test_loading_weights_of_another_shape_is_a_clear_error(tmp_path):
    perturbed_model().save_pretrained(str(tmp_path / "a"))
    HGRN2ForCausalLM(HGRN2Config(**{**SMALL, "hidden_size": 48})).save_pretrained(str(tmp_path / "b"))
    import shutil
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(ModelFileError, match=r"weight \S+ has shape \[\d+(, \d+)*\], but the model needs"):
        HGRN2ForCausalLM.from_pretrained(str(tmp_path / "a"))


def test_bad_input():
    model = perturbed_model()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(paddle.to_tensor([[0, 41]], dtype="int64"))
    with pytest.raises(ValueError, match="2-D"):
        model(paddle.to_tensor([1, 2], dtype="int64"))
    state = model(random_ids(2, 3, 41), use_cache=True).state
    with pytest.raises(ValueError, match=r"state\['recurrent'\] has shape"):
        model(random_ids(3, 3, 41), state=state)
    with pytest.raises(ValueError, match="state must be the dict"):
        model(random_ids(2, 3, 41), state={"wkv": state["recurrent"]})
