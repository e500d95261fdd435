"""Shared test helpers: run a function forward and backward with given cotangents, compare with tolerances; inputs of
the operators in the ranges the models give them (convolution filters, log forget gates, MRU step matrices); small
models moved off their initialisation (one per family, SMALL_MODELS), random token ids and a model's logits fed in
chunks."""
import os
import subprocess
import sys

import numpy as np
import paddle

from paddle_lrnn.models.hgrn2 import HGRN2Config, HGRN2ForCausalLM
from paddle_lrnn.models.mru import MRUConfig, MRUForCausalLM
from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM
from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_with_grads(fn, inputs, cotangents, grad_of=None):
    """Calls fn(*inputs) (numpy arrays or None), then backpropagates sum(out_i * cotangent_i).

    Returns (outputs as numpy, gradients as numpy for the inputs listed in grad_of, default all non-None)."""
    tensors = [None if x is None else paddle.to_tensor(x, stop_gradient=False) for x in inputs]
    outs = fn(*tensors)
    outs = outs if isinstance(outs, (tuple, list)) else [outs]
    loss = sum((o.astype("float64") * paddle.to_tensor(c, dtype="float64")).sum()
               for o, c in zip(outs, cotangents) if c is not None)
    idx = [i for i, t in enumerate(tensors) if t is not None] if grad_of is None else grad_of
    grads = paddle.grad(loss, [tensors[i] for i in idx], allow_unused=True)
    return [o.astype("float64").numpy() for o in outs], [None if g is None else g.astype("float64").numpy() for g in grads]


def assert_close(actual, expected, rtol, atol_scale, name=""):
    """allclose with an absolute tolerance relative to the largest expected magnitude."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert np.isfinite(actual).all(), f"{name}: non-finite values"
    atol = atol_scale * max(np.abs(expected).max(), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


def finite_difference(fn, inputs, cotangent_fn, index, eps=1e-6):
    """Central differences of L = cotangent_fn(fn(*inputs)) w.r.t. inputs[index] (float64 numpy arrays)."""
    x = inputs[index]
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for step in (eps, -eps):
            flat[i] = old + step
            args = [None if a is None else paddle.to_tensor(a) for a in inputs]
            vals.append(cotangent_fn(fn(*args)))
        flat[i] = old
        grad.reshape(-1)[i] = (vals[0] - vals[1]) / (2 * eps)
    return grad


def assert_close_dg(dg, dg_ref, q, k, dq_ref, dk_ref, rtol, atol_scale, what=""):
    """dg comes from the reverse running sum of q * dq - k * dk (gla.h), whose terms cancel where the true dg is
    small (gates near 0, a zero initial state): its absolute error scales with those terms, not with dg itself."""
    name = f"{what}: grad g" if what else "grad g"
    terms = max(np.abs(q * dq_ref).max(), np.abs(k * dk_ref).max(), np.abs(dg_ref).max(), 1e-30)
    assert np.isfinite(dg).all(), f"{name}: non-finite values"
    np.testing.assert_allclose(dg, dg_ref, rtol=rtol, atol=atol_scale * terms, err_msg=name)


def conv_inputs(B, C, T, L, seed):
    """(w [C, L], x [B, C, T]) float32 standard normal: a depthwise filter per channel and its input."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (C, L)).astype(np.float32), rng.normal(0, 1, (B, C, T)).astype(np.float32)]


def log_gates(rng, shape, low=-20.0, high=-1e-6):
    """Log forget gates spread log-uniformly over [low, high] (< 0): gates from e^-20 to 1 - 1e-6."""
    return -np.exp(rng.uniform(np.log(-high), np.log(-low), shape))


def near_identity(shape, seed, scale=0.3, dtype=np.float32):
    """[..., d, d] matrices I + N(0, scale^2 / d): products stay O(1) over a few hundred steps."""
    rng = np.random.default_rng(seed)
    d = shape[-1]
    return (np.eye(d) + rng.normal(0, scale / np.sqrt(d), shape)).astype(dtype)


def ldu_matrices(shape, seed, scale=0.02, dtype=np.float32):
    """M = (L + D)(U + D) from a random A as the MRU layer builds them: L, U the strictly lower and upper parts of A,
    D = diag(exp((a_ii - mean_j a_jj) / 2)), so det M = 1."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, scale, shape)
    diag = np.diagonal(a, axis1=-2, axis2=-1)
    dvec = np.exp((diag - diag.mean(-1, keepdims=True)) / 2)
    dmat = np.zeros(shape)
    idx = np.arange(shape[-1])
    dmat[..., idx, idx] = dvec
    return ((np.tril(a, -1) + dmat) @ (np.triu(a, 1) + dmat)).astype(dtype)


def off_init(model, scale):
    """The model with N(0, s^2) noise added to every parameter, s = scale(name) for a function of the parameter's name
    or scale itself, in eval mode: initial values (zero matrices, unit norms, uniform mixes) would hide mistakes.
    Call paddle.seed first: the noise comes from Paddle's generator."""
    for name, p in model.named_parameters():
        p.set_value(p + paddle.randn(p.shape) * (scale(name) if callable(scale) else scale))
    model.eval()
    return model


# One small model per family whose sequences of ten or so tokens run past every window: RWKV-v2's copy-head memory
# (ctx_len - 1 = 5 tokens), HGRN2's short convolutions (with lower bounds), MRU's attention window and xPos table
# (8 positions).
SMALL_MODELS = {
    "rwkv2": (RWKV2ForCausalLM, RWKV2Config(vocab_size=37, n_embd=16, n_layer=2, ctx_len=6, head_qk_dim=8)),
    "rwkv4": (RWKV4ForCausalLM, RWKV4Config(vocab_size=29, n_embd=16, n_layer=2, variant="RWKV-ffnPre")),
    "hgrn2": (HGRN2ForCausalLM, HGRN2Config(vocab_size=41, hidden_size=32, num_hidden_layers=2, expand_ratio=8,
                                            use_short_conv=True)),
    "mru": (MRUForCausalLM, MRUConfig(embedding_size=12, dropout_rate=0.0, n_state_heads=2, state_size=18,
                                      n_attn_heads=2, key_size=8, value_size=12, max_sequence_length=8,
                                      layers=["mru", "mlp", "attn", "mru", "mlp"], vocab_size=23)),
}


def small_model(family, seed=0, **config):
    """SMALL_MODELS' model of `family` (its config changed by `config`) moved off its initialisation (zero or unit
    parameters would hide mistakes), in eval mode."""
    cls, base = SMALL_MODELS[family]
    paddle.seed(seed)
    model = cls(type(base).from_dict({**base.to_dict(), **config}))
    return off_init(model, lambda name: 0.05 if "state_matrices_up" in name else 0.1)


def random_ids(B, T, vocab, seed=1):
    """[B, T] int64 token ids drawn uniformly from [0, vocab)."""
    return paddle.to_tensor(np.random.default_rng(seed).integers(0, vocab, (B, T)), dtype="int64")


def logits_in_chunks(model, ids, cuts):
    """The model's logits for ids [B, T] fed in pieces split at the positions `cuts`, each piece starting from the
    state the previous one left (cuts 1, 2, ..., T - 1: one token at a time); returns (logits as numpy, final state)."""
    state, parts = None, []
    for a, b in zip([0] + cuts, cuts + [ids.shape[1]]):
        out = model(ids[:, a:b], state=state, use_cache=True)
        state = out.state
        parts.append(out.logits.numpy())
    return np.concatenate(parts, axis=1), state


def run_tool(name, *args):
    """`python tools/NAME.py ARGS` in a child process, from the repository: its CompletedProcess (text output)."""
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def count_calls(monkeypatch, module, name):
    """Replaces module.name by a wrapper that records each call; returns the list of records (one per call), e.g. to
    know whether a model took its fused decoding step."""
    calls, real = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def assert_fused_only_where_it_runs(model, vocab, fused_calls):
    """The model takes its fused step (fused_calls: count_calls' records of it) for a single token with use_cache,
    int64 ids, no gradients and fused_step on, and runs its layers otherwise."""
    ids = paddle.randint(0, vocab, [1, 1])
    model(ids, use_cache=True)  # gradients on: the eager layers (the operator has no backward)
    with paddle.no_grad():
        model(ids)  # no state wanted
        model(paddle.randint(0, vocab, [1, 2]), use_cache=True)  # two tokens
        model(ids.astype("int32"), use_cache=True)
        model.fused_step = False
        model(ids, use_cache=True)
    assert fused_calls == []
    model.fused_step = True
    with paddle.no_grad():
        model(ids, use_cache=True)
    assert fused_calls == [1]


def assert_steps_continue_a_prefill(model, vocab, prefill=7, steps=5):
    """Fused steps from the state a parallel pass over the first `prefill` tokens left give the logits of one
    parallel pass over them all (within 1e-5 of their magnitude)."""
    ids = paddle.randint(0, vocab, [2, prefill + steps])
    with paddle.no_grad():
        state = model(ids[:, :prefill], use_cache=True).state
        whole = model(ids).logits.numpy()
    logits, _ = run_steps(model, ids[:, prefill:], state, True)
    assert_close(logits, whole[:, prefill:], 1e-5, 1e-5, "fused steps after a prefill")


def run_steps(model, ids, state, fused):
    """Feeds ids [B, T] one token at a time from `state` with model.fused_step = fused; returns the logits [B, T, V]
    and every state on the way (numpy)."""
    model.fused_step = fused
    logits, states = [], []
    with paddle.no_grad():
        for t in range(ids.shape[1]):
            out = model(ids[:, t:t + 1], state=state, use_cache=True)
            state = out.state
            logits.append(out.logits.numpy())
            states.append({k: v.numpy() for k, v in state.items()})
    return np.concatenate(logits, axis=1), states


def assert_same_steps(model, ids, state=None):
    """A model's fused and eager decoding steps agree: the logits and each float state tensor within 1e-5 of its
    magnitude (float32 sums in another order), the wkv state per layer and per part (aa, bb, pp: pp of an untouched
    layer is the -1e38 marker), integer state tensors exactly."""
    fused_logits, fused_states = run_steps(model, ids, state, True)
    eager_logits, eager_states = run_steps(model, ids, state, False)
    assert_close(fused_logits, eager_logits, 1e-5, 1e-5, "logits")
    for t, (f, e) in enumerate(zip(fused_states, eager_states)):
        assert sorted(f) == sorted(e), f"step {t}: state keys {sorted(f)} vs {sorted(e)}"
        for key in e:
            assert f[key].shape == e[key].shape and f[key].dtype == e[key].dtype, f"step {t}: {key}"
            if e[key].dtype.kind == "i":
                np.testing.assert_array_equal(f[key], e[key])
            elif key == "wkv":
                for layer in range(e[key].shape[0]):
                    for part in range(3):
                        assert_close(f[key][layer, :, part], e[key][layer, :, part], 1e-5, 1e-5,
                                     f"step {t}: wkv layer {layer} part {part}")
            else:
                assert_close(f[key], e[key], 1e-5, 1e-5, f"step {t}: {key}")
