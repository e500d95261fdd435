"""Property-based tests of every operator: hypothesis draws the shapes (T = 1, odd sizes, sizes that are no multiple
of any block), the dtype (float32, float64, float16, bfloat16), the value ranges (WKV keys up to +-60 sigma with
spikes at +-90..100, decays from 1e-6 to 60, log gates from -20 to -1e-6, MRU matrices near the identity or of
determinant 1 as the model builds them) and an optional initial state, and the custom kernel must match the
pure-Paddle reference in values and gradients.

Bounded and reproducible by default (tests/conftest.py: hypothesis profile "ci"); `--fuzz-long` or LRNN_FUZZ=long
draws 1000 examples per operator with longer sequences."""
import os

import numpy as np
import paddle
import pytest
from helpers import assert_close, assert_close_dg, ldu_matrices, log_gates, near_identity, run_with_grads
from hypothesis import assume, given
from hypothesis import strategies as st

from paddle_lrnn import ops
from paddle_lrnn.ops import reference

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

LONG = os.environ.get("LRNN_FUZZ") == "long"
T_MAX = 300 if LONG else 40
# rtol and atol (relative to the largest expected magnitude) of values; gradients get GRAD_SLACK x more in half
# precision, where the kernel's and the reference's float32 sums round differently before the final rounding.
TOLERANCE = {"float64": (1e-9, 1e-10), "float32": (1e-3, 1e-4), "float16": (5e-3, 5e-3), "bfloat16": (3e-2, 3e-2)}
GRAD_SLACK = {"float64": 1, "float32": 1, "float16": 4, "bfloat16": 4}
# A gradient can be pure cancellation (WKV's d/du at T = 1 is v - y with y = v to float32 precision): its error is
# then set by the larger gradients the same sums produce, not by its own size. Absolute floor: NOISE x the largest
# gradient of the call (the kernels accumulate in float32 for every dtype but float64).
NOISE = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-5, "bfloat16": 1e-5}
RANGE = {"float64": np.inf, "float32": np.inf, "float16": 32768.0, "bfloat16": 1e38}  # (half the largest value)

sizes = st.integers(1, 3)
dtypes = st.sampled_from(["float32", "float32", "float64", "float16", "bfloat16"])  # float32 twice as often
seeds = st.integers(0, 2 ** 32 - 1)


def rounded(a, dtype):
    """float64 array -> the float64 array of its values rounded to `dtype` (what both sides then compute with)."""
    if a is None:
        return None
    return paddle.to_tensor(a).astype(dtype).astype("float64").numpy()


def compare(kernel, ref, inputs, half_args, dtype, cot, names, gla_g=False, grad_rtol=None, rounded_args=None):
    """kernel(*inputs) against ref(*inputs), values and gradients. inputs: float64 arrays (None: not given).

    float32 / float64: both sides get every input in that dtype. float16 / bfloat16: the kernel gets the arguments in
    half_args as tensors of that dtype, the rest in float32, as a model passes them; the reference gets float32
    tensors of the same values (it accumulates in float32, as the kernel does): the half_args, and the rounded_args
    that the operator itself casts to the dtype (default: half_args), and the cotangents are rounded to the dtype once.
    gla_g: the input named g is GLA's log gate, whose gradient is compared as in test_ops_gla.
    grad_rtol: {name: relative tolerance (broadcast over the gradient)} added for ill-conditioned gradients."""
    rtol, atol = TOLERANCE[dtype]
    if dtype in ("float16", "bfloat16"):
        rounded_args = half_args if rounded_args is None else rounded_args
        inputs = [rounded(a, dtype) if i in rounded_args else a for i, a in enumerate(inputs)]
        cot = [rounded(c, dtype) for c in cot]
        leaf = "float32"
    else:
        leaf = dtype
    inputs = [None if a is None else a.astype(leaf) for a in inputs]

    def kernel_fn(*args):
        return kernel(*(x.astype(dtype) if i in half_args and x is not None else x for i, x in enumerate(args)))

    out_r, grad_r = run_with_grads(ref, inputs, cot)
    # results beyond the dtype's range (products of many MRU matrices in float16) overflow the kernel's half outputs
    assume(all(np.abs(r).max() < RANGE[dtype] for r in out_r + [g for g in grad_r if g is not None]))
    out_k, grad_k = run_with_grads(kernel_fn, inputs, cot)
    for name, a, b in zip(["output", "state"], out_k, out_r):
        assert_close(a, b, rtol, atol, name)
    given_names = [n for n, x in zip(names, inputs) if x is not None]
    given_inputs = [x for x in inputs if x is not None]
    rtol, atol = rtol * GRAD_SLACK[dtype], atol * GRAD_SLACK[dtype]
    grad_r = [np.zeros_like(a) if b is None else b for a, b in zip(grad_k, grad_r)]  # (no path to the loss: zero)
    floor = NOISE[dtype] * max(np.abs(b).max() for b in grad_r)
    extra = grad_rtol or {}
    for name, a, b in zip(given_names, grad_k, grad_r):
        if name == "g" and gla_g:
            q, k = given_inputs[0], given_inputs[1]
            assert_close_dg(a, b, q, k, grad_r[0], grad_r[1], rtol, atol)
        else:
            assert_within(a, b, rtol + extra.get(name, 0.0), max(atol * np.abs(b).max(), floor), f"grad {name}")


def assert_within(actual, expected, rtol, atol, name):
    """|actual - expected| <= atol + rtol |expected| elementwise; rtol may be an array (np.testing's is a scalar)."""
    assert np.isfinite(actual).all(), f"{name}: non-finite values"
    bad = np.abs(actual - expected) > atol + rtol * np.abs(expected)
    assert not bad.any(), f"{name}: {actual[bad]} != {expected[bad]} (rtol {np.broadcast_to(rtol, bad.shape)[bad]})"


def normal(rng, shape, scale=1.0):
    return rng.normal(0, scale, shape)


# ---------------------------------------------------------------------------------------------------------------
# WKV

@given(B=sizes, T=st.integers(1, T_MAX), C=st.integers(1, 37), dtype=dtypes, seed=seeds,
       k_scale=st.sampled_from([1.0, 10.0, 60.0]), spikes=st.booleans(),
       w_range=st.sampled_from([(1e-6, 1e-3), (0.05, 3.0), (20.0, 60.0)]), with_state=st.booleans(),
       eps=st.sampled_from([0.0, 1e-16, 1e-2]))
def test_wkv(B, T, C, dtype, seed, k_scale, spikes, w_range, with_state, eps):
    rng = np.random.default_rng(seed)
    w = rng.uniform(*w_range, C)
    u = normal(rng, C)
    k = normal(rng, (B, T, C), k_scale)
    if spikes:  # beyond exp's float32 range (88.7): only the log-space form survives these. (Not all equal: where
        # two maxima tie, max() has no derivative and the kernel and the reference may split the gradient differently.)
        for sign in (1, -1):
            at = rng.random((B, T, C)) < 0.05
            k[at] = sign * rng.uniform(90, 100, at.sum())
    v = normal(rng, (B, T, C))
    state = None
    if with_state:  # as an earlier call hands it over
        prefix = [paddle.to_tensor(a, dtype="float64")
                  for a in (w, u, normal(rng, (B, 3, C), 3), normal(rng, (B, 3, C)))]
        state = ops.wkv(*prefix)[1].numpy()
    cot = [normal(rng, (B, T, C)), normal(rng, (B, 3, C))]
    # The decay enters as pp - w, with pp the running maximum of the keys: where pp is large and w tiny, w keeps only
    # its leading bits (ulp(80) = 7.6e-6 in float32) and d/dw has a relative error of about roundoff * |pp| / w, in
    # the kernel and the reference alike (float64 shows both float32 results off; this is the format, not the code).
    roundoff = 2.0 ** -53 if dtype == "float64" else 2.0 ** -24  # (half inputs: float32 inside)
    pp = max(np.abs(k).max(), 0.0 if state is None else np.abs(state[:, 2]).max())
    compare(lambda *a: ops.wkv(*a, eps=eps), lambda *a: reference.wkv(*a, eps=eps), [w, u, k, v, state], (2, 3),
            dtype, cot, ["w", "u", "k", "v", "state"], grad_rtol={"w": 8 * roundoff * pp / w})


# ---------------------------------------------------------------------------------------------------------------
# TimeX and the short depthwise convolution

@given(B=sizes, C=st.integers(1, 9), T=st.integers(1, T_MAX), extra=st.integers(0, 20), dtype=dtypes, seed=seeds,
       eps=st.sampled_from([0.0, 1e-16, 0.5]))
def test_timex(B, C, T, extra, dtype, seed, eps):
    rng = np.random.default_rng(seed)
    L = T + extra  # the kernel covers the sequence; its first `extra` columns are unused
    cot = [normal(rng, (B, C, T))]
    compare(lambda *a: ops.timex(*a, eps=eps), lambda *a: reference.timex(*a, eps=eps),
            [normal(rng, (C, L)), normal(rng, (B, C, T))], (1,), dtype, cot, ["w", "x"], rounded_args=(0, 1))


@given(B=sizes, C=st.integers(1, 9), T=st.integers(1, 3 * T_MAX), L=st.integers(1, 8), dtype=dtypes, seed=seeds)
def test_depthwise_conv1d(B, C, T, L, dtype, seed):
    rng = np.random.default_rng(seed)
    cot = [normal(rng, (B, C, T))]
    compare(ops.depthwise_conv1d, reference.depthwise_conv1d, [normal(rng, (C, L)), normal(rng, (B, C, T))], (1,),
            dtype, cot, ["w", "x"], rounded_args=(0, 1))  # (both cast w to x's dtype)


# ---------------------------------------------------------------------------------------------------------------
# GLA (HGRN2's recurrence)

@given(B=sizes, T=st.integers(1, T_MAX + 30), H=st.integers(1, 3), K=st.integers(1, 19), V=st.integers(1, 19),
       dtype=dtypes, seed=seeds,
       g_range=st.sampled_from([(-20.0, -1e-6), (-1e-5, -1e-6), (-20.0, -15.0), (-3.0, -0.01)]),
       with_state=st.booleans(), scale=st.sampled_from([None, 1.0, 0.3]))
def test_gla(B, T, H, K, V, dtype, seed, g_range, with_state, scale):
    rng = np.random.default_rng(seed)
    q, k = normal(rng, (B, T, H, K)), normal(rng, (B, T, H, K))
    v = normal(rng, (B, T, H, V))
    g = log_gates(rng, (B, T, H, K), *g_range)
    state = normal(rng, (B, H, K, V)) if with_state else None
    cot = [normal(rng, (B, T, H, V)), normal(rng, (B, H, K, V))]
    compare(lambda *a: ops.gla(*a, scale=scale), lambda *a: reference.gla(*a, scale=scale), [q, k, v, g, state],
            (0, 1, 2, 3), dtype, cot, ["q", "k", "v", "g", "state"], gla_g=True)


# ---------------------------------------------------------------------------------------------------------------
# MRU scan

@given(B=sizes, H=st.integers(1, 3), T=st.integers(1, T_MAX), d=st.sampled_from([1, 2, 3, 4, 5, 7, 8, 16, 32]),
       dtype=dtypes, seed=seeds, det_one=st.booleans(), with_state=st.booleans())
def test_mru_scan(B, H, T, d, dtype, seed, det_one, with_state):
    rng = np.random.default_rng(seed)
    shape = (B, H, T, d, d)
    m = ldu_matrices(shape, seed, scale=0.05, dtype=np.float64) if det_one else near_identity(shape, seed,
                                                                                            dtype=np.float64)
    state = near_identity((B, H, d, d), seed + 1, dtype=np.float64) if with_state else None
    cot = [normal(rng, shape), normal(rng, (B, H, d, d))]
    compare(ops.mru_scan, reference.mru_scan, [m, state], (0,), dtype, cot, ["m", "state"])


@given(lead=st.lists(st.integers(1, 4), max_size=2), K=st.integers(1, 3 * T_MAX), N=st.integers(1, 1100),
       dtype=st.sampled_from(["bfloat16", "float16", "int8"]), seed=seeds, scale=st.sampled_from([1e-3, 1.0, 300.0]),
       transpose=st.booleans())
def test_weight_matmul(lead, K, N, dtype, seed, scale, transpose):
    """Inference only (no gradients): the value within float32 rounding of the exact product of x and the weight
    the kernel reads, |y - x @ dequant(w)| <= (K + 1) u sum |x||dequant(w)| with u = 2^-24 (any order of the sums,
    fused or not; int8 one more rounding for the scale), for any leading dimensions, K and N, with the weight
    stored [K, N] or transposed."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((*lead, K)) * scale).astype(np.float32)
    w = paddle.to_tensor((rng.standard_normal((K, N)) * scale).astype(np.float32))
    if dtype == "int8":
        w, s = ops.quantize_int8(w)
        w64 = w.numpy().astype(np.float64) * s.numpy().astype(np.float64)
    else:
        w, s = w.astype(dtype), None
        w64 = w.astype("float32").numpy().astype(np.float64)
    if transpose:
        w = w.t().contiguous()
    got = ops.weight_matmul(paddle.to_tensor(x), w, s, transpose_weight=transpose).numpy().astype(np.float64)
    assert got.shape == (*lead, N)
    x64 = x.astype(np.float64)
    bound = (K + 1) * 2.0 ** -24 * (np.abs(x64) @ np.abs(w64)) * (1 + 1e-6) + np.finfo(np.float32).tiny
    assert (np.abs(got - x64 @ w64) <= bound).all()
