"""MRUForCausalLM and its layers (mikayahlevi/mru-lm's hybrid network): the config's checks, parameter names, order,
count and initialisation, the LDU step matrices, the whole model against an independent float64 numpy
implementation (MRU, MLP and xPos attention layers), every mode giving the same logits (parallel, one token at a
time, chunks with the state), the attention cache and its window, save/load, Auto dispatch, gradients, dropout, and
bad input."""
import math

import numpy as np
import paddle
import pytest

from helpers import finite_difference, logits_in_chunks, off_init, random_ids
from paddle_lrnn.layers.mru import MRU, XPos, ldu_step_matrices, mru_dims, rotate_every_two, xpos_tables
from paddle_lrnn.models import AutoConfig, AutoModelForCausalLM
from paddle_lrnn.models.mru import MRUConfig, MRUForCausalLM
from paddle_lrnn.models.mru.modeling import state_matrices_up_lr_scale

# 2 heads of 3 x 3 state matrices (o = 3, c = 2), 2 attention heads of key size 4, value size 6
HYBRID = dict(embedding_size=12, dropout_rate=0.0, n_state_heads=2, state_size=18, n_attn_heads=2, key_size=8,
              value_size=12, max_sequence_length=16, layers=["mru", "mlp", "attn", "mru", "mlp"], vocab_size=23)


def perturbed_model(seed=0, up_scale=0.05, **config):
    """A small model moved off its init (zero state_matrices_up and unit norms would hide mistakes); the step
    matrices stay near the identity so that the prefix products do not explode."""
    paddle.seed(seed)
    model = MRUForCausalLM(MRUConfig(**{**HYBRID, **config}))
    return off_init(model, lambda name: up_scale if "state_matrices_up" in name else 0.3)


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------------------------------ numpy reference
def np_layer_norm(x, w):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w


def np_gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_ldu(A):
    L, U = np.tril(A, -1), np.triu(A, 1)
    d = np.diagonal(A, axis1=-2, axis2=-1)
    D = np.zeros_like(A)
    idx = np.arange(A.shape[-1])
    D[..., idx, idx] = np.sqrt(np.exp(d - d.mean(-1, keepdims=True)))
    return (L + D) @ (U + D)


def np_model(model, ids):
    """Logits [B, T, V] and the MRU states of the original's forward, in float64, sequential products, the xPos
    formula of the original's model.py written out per position (no tables)."""
    cfg = model.config
    P = {n: p.numpy().astype(np.float64) for n, p in model.named_parameters()}
    ids = np.asarray(ids)
    B, T = ids.shape
    E = cfg.embedding_size
    x = P["wte.weight"][ids]
    states = []
    for i, kind in enumerate(cfg.layers):
        h = np_layer_norm(x, P[f"pre_lns.{i}.weight"])
        if kind == "mru":
            o = cfg.state_order
            heads = cfg.n_state_heads
            a = (h @ P[f"layers.{i}.state_matrices_up.weight"]).reshape(B, T, heads, o, o)
            M = np_ldu(a)
            S = np.broadcast_to(np.eye(o), (B, heads, o, o)).copy()
            prefix = np.zeros_like(M)
            for t in range(T):
                S = S @ M[:, t]
                prefix[:, t] = S
            states.append(S)
            y = (prefix @ P[f"layers.{i}.state_matrices_down"]).reshape(B, T, E)
            out = y @ P[f"layers.{i}.mru_out.weight"]
        elif kind == "mlp":
            out = np_gelu(h @ P[f"layers.{i}.mlp.0.weight"]) @ P[f"layers.{i}.mlp.2.weight"]
        else:
            H, dk, dv = cfg.n_attn_heads, cfg.key_head_size, cfg.value_head_size
            q = (h @ P[f"layers.{i}.query_layer.weight"]).reshape(B, T, H, dk)
            k = (h @ P[f"layers.{i}.key_layer.weight"]).reshape(B, T, H, dk)
            v = (h @ P[f"layers.{i}.value_layer.weight"]).reshape(B, T, H, dv)
            j = np.arange(1, dk // 2 + 1)
            theta = np.repeat(1e-4 ** (2 * j / dk), 2)
            zeta = np.repeat((2 * j / (dk / 2) + 0.4 * dk) / (1 + 0.4 * dk), 2)
            u = ((np.arange(T) - cfg.max_sequence_length // 2) / 512.0)[:, None, None]

            def rot(z):
                r = np.empty_like(z)
                r[..., 0::2], r[..., 1::2] = -z[..., 1::2], z[..., 0::2]
                return r

            c, s = np.cos(u * theta), np.sin(u * theta)
            q = (q * c + rot(q) * s) * zeta ** u
            k = (k * c + rot(k) * s) * zeta ** -u
            scores = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(dk)
            dist = np.arange(T)[:, None] - np.arange(T)[None, :]
            scores = np.where((dist >= 0) & (dist < cfg.max_sequence_length), scores, -np.inf)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out = np.einsum("bhts,bshd->bthd", p, v).reshape(B, T, H * dv) @ P[f"layers.{i}.attention_down.weight"]
        x = x + out
    x = np_layer_norm(x, P["final_ln.weight"])
    return x @ P["wte.weight"].T, states


# ------------------------------------------------------------------------------------------------------------ config
def test_config_defaults_are_the_shakespeare_char_model_json():
    cfg = MRUConfig()
    assert cfg.to_dict() == dict(model_type="mru", embedding_size=384, dropout_rate=0.2, n_state_heads=6,
                                 state_size=384, n_attn_heads=6, key_size=384, value_size=384,
                                 max_sequence_length=1024, layers=["mru", "mlp"] * 6, vocab_size=65)
    assert (cfg.state_order, cfg.n_layers, cfg.key_head_size) == (8, 12, 64)
    assert mru_dims(384, 6, 384) == (8, 8) and mru_dims(768, 3, 768) == (16, 16)  # shakespeare-char, tinystories


@pytest.mark.parametrize("bad,match", [
    (dict(state_size=19), "state_size 19 must be divisible by n_state_heads 2"),
    (dict(state_size=24), "state head size state_size / n_state_heads = 12 must be a perfect square"),
    (dict(embedding_size=14), "embedding_size 14 must be divisible by the state head order 3"),
    (dict(embedding_size=15), r"embedding_size 15 must be divisible by state head order x n_state_heads = 3 x 2"),
    (dict(layers=["mru", "rnn", "mlp", "conv"]), r"unknown layer type\(s\) 'conv', 'rnn'; known: mru, mlp, attn"),
    (dict(layers=[]), "non-empty list"),
    (dict(key_size=6), r"key head size key_size // n_attn_heads = 6 // 2 = 3 must be even"),
    (dict(value_size=13), "value_size 13 must be divisible by n_attn_heads 2"),
    (dict(dropout_rate=1.0), "dropout_rate"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(foo=1), "unknown field"),
])
def test_bad_configs_give_one_clear_error(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MRUConfig(**{**HYBRID, **bad})


def test_checks_follow_the_layers_present_as_in_the_original():
    # no MRU layer: the state sizes are not checked (the original builds no mru module); no attention layer: the
    # attention sizes are not, except the xPos head size, which the original checks always (it builds xPos always)
    MRUConfig(**{**HYBRID, "layers": ["attn", "mlp"], "state_size": 19})
    MRUConfig(**{**HYBRID, "layers": ["mru", "mlp"], "value_size": 13})
    with pytest.raises(ValueError, match="must be even"):
        MRUConfig(**{**HYBRID, "layers": ["mru", "mlp"], "key_size": 6})


# --------------------------------------------------------------------------------------------- parameters and init
def test_parameter_names_order_and_count_are_the_original_s():
    model = MRUForCausalLM(MRUConfig())
    names = [n for n, _ in model.named_parameters()]
    want = []
    for i in range(12):
        want += ([f"layers.{i}.state_matrices_down", f"layers.{i}.state_matrices_up.weight",
                  f"layers.{i}.mru_out.weight"] if i % 2 == 0 else [f"layers.{i}.mlp.0.weight",
                                                                     f"layers.{i}.mlp.2.weight"])
    want += [f"pre_lns.{i}.weight" for i in range(12)] + ["wte.weight", "final_ln.weight"]
    assert names == want
    assert model.num_parameters() == 8_879_616  # the reference's count for shakespeare-char (V = 65), tied once
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    assert shapes["layers.0.state_matrices_down"] == [6, 8, 8]
    assert shapes["layers.1.mlp.0.weight"] == [384, 1536]  # Paddle's [in, out]
    attn = dict(MRUForCausalLM(MRUConfig(**HYBRID)).named_parameters())
    assert [n for n in attn if n.startswith("layers.2.")] == [
        "layers.2.query_layer.weight", "layers.2.key_layer.weight", "layers.2.value_layer.weight",
        "layers.2.attention_down.weight"]
    assert list(attn["layers.2.attention_down.weight"].shape) == [12, 12]


def test_initialisation_is_the_original_s():
    paddle.seed(0)
    cfg = MRUConfig(embedding_size=256, n_state_heads=4, state_size=256, n_attn_heads=4, key_size=256,
                    value_size=256, layers=["mru", "mlp", "attn", "mlp"], vocab_size=500)
    model = MRUForCausalLM(cfg)
    n = 4
    want_std = {"wte.weight": 0.02, "state_matrices_down": 0.02 * math.sqrt(8), "mru_out.weight": 0.02 / math.sqrt(n),
                "mlp.0.weight": 0.02, "mlp.2.weight": 0.02 / math.sqrt(n), "query_layer.weight": 0.02,
                "key_layer.weight": 0.02, "value_layer.weight": 0.02, "attention_down.weight": 0.02 / math.sqrt(n)}
    for name, p in model.named_parameters():
        value = p.numpy()
        if "ln" in name:
            assert np.all(value == 1), name
        elif "state_matrices_up" in name:
            assert np.all(value == 0), name  # every step matrix is the identity at init
        else:
            std = next(s for k, s in want_std.items() if name.endswith(k))
            assert abs(value.std() / std - 1) < 0.1 and abs(value.mean()) < 0.1 * std, name


def test_lr_scale_of_state_matrices_up():
    assert state_matrices_up_lr_scale(8, 256) == pytest.approx(0.011048543)  # the reference's 0.01105
    assert state_matrices_up_lr_scale(16, 512) == pytest.approx(0.0039, abs=5e-5)


# ---------------------------------------------------------------------------------------------------- the layers
def test_ldu_step_matrices_have_determinant_one_and_are_the_identity_at_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.5, (3, 5, 16))
    m = ldu_step_matrices(paddle.to_tensor(a), 4).numpy()
    np.testing.assert_allclose(m, np_ldu(a.reshape(3, 5, 4, 4)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, rtol=1e-10)
    # float32 zeros: I up to Paddle's exp(0) and sqrt, which some CPUs round to 1 - 2^-24 (an ulp or two each, so the
    # square D^2 within 4 eps of 1; see test_init_model_mru_layers_output_a_constant)
    zero = ldu_step_matrices(paddle.zeros([2, 9]), 3).numpy()
    np.testing.assert_allclose(zero, np.broadcast_to(np.eye(3), (2, 3, 3)), rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_ldu_and_mru_gradients_match_finite_differences():
    """float64 central differences: the LDU step matrices (the diagonal's exp/sqrt path included: paddle.diag_embed
    passes no gradient, which once silently dropped it) and the whole MRU layer w.r.t. state_matrices_up, x and the
    previous state."""
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.5, (2, 9))
    G = rng.normal(size=(2, 3, 3))
    x = paddle.to_tensor(a, stop_gradient=False)
    (ldu_step_matrices(x, 3) * paddle.to_tensor(G)).sum().backward()
    want = finite_difference(lambda t: ldu_step_matrices(t, 3), [a.copy()], lambda m: float((m.numpy() * G).sum()), 0)
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6, atol=1e-8)

    paddle.seed(5)
    layer = MRU(8, 2, 8)  # o = 2, c = 2
    layer.to(dtype="float64")
    up = rng.normal(0, 0.3, (8, 8))
    xs = rng.normal(size=(2, 5, 8))
    s0 = np.eye(2) + rng.normal(0, 0.2, (2, 2, 2, 2))
    Gy, Gs = rng.normal(size=(2, 5, 8)), rng.normal(size=(2, 2, 2, 2))

    def loss(w, x_, s_):
        layer.state_matrices_up.weight.set_value(w)
        y, s = layer(x_, s_)
        return y, s

    def scalar(out):
        return float((out[0].numpy() * Gy).sum() + (out[1].numpy() * Gs).sum())

    w = paddle.to_tensor(up, stop_gradient=False)
    tx, ts = paddle.to_tensor(xs, stop_gradient=False), paddle.to_tensor(s0, stop_gradient=False)
    layer.state_matrices_up.weight.set_value(up)
    y, s = layer(tx, ts)
    ((y * paddle.to_tensor(Gy)).sum() + (s * paddle.to_tensor(Gs)).sum()).backward()
    got = {"up": layer.state_matrices_up.weight.grad.numpy(), "x": tx.grad.numpy(), "state": ts.grad.numpy()}
    inputs = [up.copy(), xs.copy(), s0.copy()]
    for i, name in enumerate(["up", "x", "state"]):
        want = finite_difference(lambda *t: loss(t[0].numpy(), t[1], t[2]), inputs, scalar, i)
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-7, err_msg=name)


def test_mru_layer_with_a_previous_state_is_the_original_s_prepending():
    """The original prepends the previous state as an extra first matrix and drops the first output: that is the
    prefix product started from the state."""
    paddle.seed(2)
    layer = MRU(12, 2, 18)
    layer.state_matrices_up.weight.set_value(paddle.randn([12, 18]) * 0.2)
    x = paddle.randn([2, 7, 12])
    s0 = paddle.to_tensor(np.eye(3) + np.random.default_rng(1).normal(0, 0.3, (2, 2, 3, 3)), dtype="float32")
    y, s = layer(x, s0)
    a = (x.numpy().astype(np.float64) @ layer.state_matrices_up.weight.numpy()).reshape(2, 7, 2, 3, 3)
    full = np.concatenate([s0.numpy()[:, None].astype(np.float64), np_ldu(a)], axis=1)  # [B, 1 + T, h, o, o]
    prefix = [full[:, 0]]
    for t in range(1, 8):
        prefix.append(prefix[-1] @ full[:, t])
    prefix = np.stack(prefix[1:], axis=1)
    want = (prefix @ layer.state_matrices_down.numpy()).reshape(2, 7, 12) @ layer.mru_out.weight.numpy()
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.numpy(), prefix[:, -1], rtol=1e-5, atol=1e-5)
    assert s.dtype == paddle.float32


def test_xpos_tables_follow_the_formula_and_extend_past_the_table():
    c, s, t, invt = xpos_tables(8, 0, 16, 16)
    assert c.shape == (16, 1, 8) and c.dtype == np.float32
    j = np.arange(1, 5)
    theta = np.repeat(1e-4 ** (2 * j / 8), 2)
    zeta = np.repeat((2 * j / 4 + 3.2) / 4.2, 2)
    u = ((np.arange(16) - 8) / 512)[:, None, None]
    np.testing.assert_allclose(c, np.cos(u * theta), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s, np.sin(u * theta), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(t, zeta ** u, rtol=1e-6)
    np.testing.assert_array_equal(invt, np.float32(1) / t)
    # rows past max_sequence_length continue the same formula; any window of rows equals the full table's
    full = xpos_tables(8, 0, 40, 16)
    for a, b in [(0, 16), (16, 40), (5, 23)]:
        for whole, part in zip(full, xpos_tables(8, a, b, 16)):
            np.testing.assert_array_equal(whole[a:b], part)
    with pytest.raises(ValueError, match="must be even"):
        xpos_tables(6 + 1, 0, 4, 4)


def test_xpos_scores_depend_only_on_the_distance():
    xpos = XPos(8, 16)
    rng = np.random.default_rng(0)
    q = paddle.to_tensor(rng.normal(size=(1, 1, 1, 8)), dtype="float32")
    k = paddle.to_tensor(rng.normal(size=(1, 1, 1, 8)), dtype="float32")
    scores = []
    for start in (0, 3, 10, 30):  # 30: past the table
        q1, _ = xpos(q, k, start + 4)
        _, k1 = xpos(q, k, start)
        scores.append(float((q1 * k1).sum()))
    np.testing.assert_allclose(scores, scores[0], rtol=1e-5)
    x = paddle.to_tensor([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(rotate_every_two(x).numpy(), [[-2.0, 1.0, -4.0, 3.0]])


# ----------------------------------------------------------------------------------------------------- the model
def test_model_matches_an_independent_float64_implementation():
    model = perturbed_model()
    ids = random_ids(2, 11, HYBRID["vocab_size"])
    out = model(ids, use_cache=True)
    want, states = np_model(model, ids.numpy())
    assert rel_diff(out.logits.numpy(), want) < 1e-5
    for got, ref in zip(out.state["mru"].numpy(), states):
        assert rel_diff(got, ref) < 1e-5
    assert out.logits.dtype == paddle.float32 and list(out.logits.shape) == [2, 11, 23]


def test_every_mode_gives_the_same_logits_and_state():
    model = perturbed_model(1)
    ids = random_ids(3, 14, HYBRID["vocab_size"], seed=4)
    full = model(ids, use_cache=True)
    want = full.logits.numpy()
    for cuts in ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [5], [3, 9, 10]):
        got, state = logits_in_chunks(model, ids, cuts)
        assert rel_diff(got, want) < 2e-6, cuts
        assert rel_diff(state["mru"].numpy(), full.state["mru"].numpy()) < 2e-6
        np.testing.assert_allclose(state["attn_keys"].numpy(), full.state["attn_keys"].numpy(), rtol=1e-5, atol=1e-6)
        assert int(state["attn_position"].item()) == 14
    assert list(full.state["mru"].shape) == [2, 3, 2, 3, 3]
    assert list(full.state["attn_keys"].shape) == [1, 3, 14, 2, 4]
    assert list(full.state["attn_values"].shape) == [1, 3, 14, 2, 6]
    # the state of a fresh sequence is the same as none
    np.testing.assert_array_equal(model(ids, state=model.initial_state(3)).logits.numpy(), want)


def test_attention_window_past_max_sequence_length():
    """A query sees the last max_sequence_length positions, itself included, in every mode; the cache keeps that
    many keys; the numpy reference (a banded causal mask, xPos past the table) agrees."""
    model = perturbed_model(2, max_sequence_length=6)
    ids = random_ids(2, 15, HYBRID["vocab_size"], seed=5)
    want = model(ids).logits.numpy()
    assert rel_diff(want, np_model(model, ids.numpy())[0]) < 1e-5
    got, state = logits_in_chunks(model, ids, list(range(1, 15)))
    assert rel_diff(got, want) < 2e-6
    assert list(state["attn_keys"].shape) == [1, 2, 6, 2, 4] and int(state["attn_position"].item()) == 15
    got, _ = logits_in_chunks(model, ids, [4, 11])
    assert rel_diff(got, want) < 2e-6


def test_attention_only_and_mru_only_models():
    attn = perturbed_model(3, layers=["attn", "mlp"])
    ids = random_ids(2, 9, HYBRID["vocab_size"])
    out = attn(ids, use_cache=True)
    assert set(out.state) == {"attn_keys", "attn_values", "attn_position"}
    assert rel_diff(logits_in_chunks(attn, ids, [2, 5])[0], out.logits.numpy()) < 2e-6
    assert rel_diff(out.logits.numpy(), np_model(attn, ids.numpy())[0]) < 1e-5
    mru = perturbed_model(3, layers=["mru", "mru", "mlp"])
    out = mru(ids, use_cache=True)
    assert set(out.state) == {"mru"} and list(out.state["mru"].shape) == [2, 2, 2, 3, 3]
    assert rel_diff(logits_in_chunks(mru, ids, [1, 2, 7])[0], out.logits.numpy()) < 2e-6


def test_float64_model_keeps_float64_states():
    model = perturbed_model(4)
    ids = random_ids(2, 8, HYBRID["vocab_size"])
    want = model(ids).logits.numpy()
    model.to(dtype="float64")
    out = model(ids, use_cache=True)
    assert out.state["mru"].dtype == paddle.float64 and out.logits.dtype == paddle.float32
    assert rel_diff(out.logits.numpy(), np_model(model, ids.numpy())[0]) < 1e-7
    assert rel_diff(want, out.logits.numpy()) < 1e-5


def test_init_model_mru_layers_output_a_constant():
    """Zero state_matrices_up: every step matrix is (L + D)(U + D) = D^2 with D = sqrt(exp(0)) I, which is I up to
    the rounding of Paddle's exp and sqrt, and that differs between CPUs (exactly 1 on an AMD EPYC with AVX2,
    1 - 2^-23 on an Intel Xeon with AVX-512). So each MRU layer adds nearly the same vector at every position and
    its state is nearly I. Bounds from float32 rounding (eps = 2^-23): a step matrix within 4 eps of I (exp, sqrt
    and the square each within an ulp or two), the state after T steps within 4 T eps, and an output also carries
    the rounding of its two products, of lengths o and E (2 (o + E) eps of max |y|)."""
    paddle.seed(0)
    model = MRUForCausalLM(MRUConfig(**{**HYBRID, "layers": ["mru"]}))
    model.eval()
    layer = model.layers[0]
    T, E, o, eps = 5, 12, layer.order, np.finfo(np.float32).eps
    y, s = layer(paddle.randn([2, T, E]))
    y = y.numpy()
    np.testing.assert_allclose(y, np.broadcast_to(y[:1, :1], y.shape), rtol=0,
                               atol=(4 * T + 2 * (o + E)) * eps * np.abs(y).max())
    np.testing.assert_allclose(s.numpy(), np.broadcast_to(np.eye(o), [2, 2, o, o]), rtol=0, atol=4 * T * eps)


def test_gradients_reach_every_parameter():
    model = perturbed_model(5)
    model.train()
    ids = random_ids(2, 10, HYBRID["vocab_size"])
    logits = model(ids).logits
    loss = paddle.nn.functional.cross_entropy(logits.reshape([-1, 23]), ids.reshape([-1]))
    loss.backward()
    for name, p in model.named_parameters():
        g = p.grad
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).max() > 0, name
    # also from a zero-initialised state_matrices_up (the step matrices are I, the gradient is not zero)
    paddle.seed(1)
    fresh = MRUForCausalLM(MRUConfig(**HYBRID))
    logits = fresh(ids).logits
    paddle.nn.functional.cross_entropy(logits.reshape([-1, 23]), ids.reshape([-1])).backward()
    assert np.abs(fresh.layers[0].state_matrices_up.weight.grad.numpy()).max() > 0


def test_dropout_is_active_in_training_only():
    model = perturbed_model(6, dropout_rate=0.5)
    ids = random_ids(1, 6, HYBRID["vocab_size"])
    a, b = model(ids).logits.numpy(), model(ids).logits.numpy()
    np.testing.assert_array_equal(a, b)
    model.train()
    assert not np.array_equal(model(ids).logits.numpy(), a)


# --------------------------------------------------------------------------------------------- save/load and auto
def test_save_load_and_auto_dispatch(tmp_path):
    model = perturbed_model(7)
    ids = random_ids(2, 7, HYBRID["vocab_size"])
    model.save_pretrained(str(tmp_path))
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert isinstance(loaded, MRUForCausalLM) and loaded.config.layers == HYBRID["layers"]
    np.testing.assert_array_equal(loaded(ids).logits.numpy(), model(ids).logits.numpy())
    assert isinstance(AutoConfig.from_pretrained(str(tmp_path)), MRUConfig)
    assert isinstance(AutoModelForCausalLM.from_config(MRUConfig(**HYBRID)), MRUForCausalLM)
    # the xPos tables are not saved: they are recomputed from the config
    from paddle_lrnn.io import load_safetensors

    assert not [k for k in load_safetensors(str(tmp_path / "model.safetensors")) if "position" in k]


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_input_and_state():
    model = perturbed_model(8)
    ids = random_ids(2, 5, HYBRID["vocab_size"])
    state = model(ids, use_cache=True).state
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(paddle.to_tensor([[0, 23]], dtype="int64"))
    with pytest.raises(ValueError, match="expected \\[2, 1, 2, 3, 3\\]|state\\['mru'\\] has shape"):
        model(ids[:1], state=state)
    with pytest.raises(ValueError, match="keys"):
        model(ids, state={"mru": state["mru"]})
    with pytest.raises(ValueError, match="2-D"):
        model(paddle.to_tensor([1, 2, 3], dtype="int64"))
