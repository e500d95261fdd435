"""GLA operator (the gated outer-product recurrence of HGRN2): the custom kernel against the pure-Paddle reference
(values and gradients w.r.t. q, k, v, g and the initial state), the reference and the float64 kernel against finite
differences, chunked-with-state against one pass, half inputs, subsets of outputs, and argument errors."""
import numpy as np
import paddle
import pytest
from helpers import assert_close, assert_close_dg, finite_difference, log_gates, run_with_grads

from paddle_lrnn.ops import reference
from paddle_lrnn.ops.gla import gla

NAMES = ["q", "k", "v", "g", "state"]


def make_inputs(B, T, H, K, V, seed, with_state=False, g_range=(-20.0, -1e-6), dtype=np.float32):
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, (B, T, H, K))
    k = rng.normal(0, 1, (B, T, H, K))
    v = rng.normal(0, 1, (B, T, H, V))
    g = log_gates(rng, (B, T, H, K), *g_range)
    state = rng.normal(0, 1, (B, H, K, V)) if with_state else None
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    return [cast(a) for a in (q, k, v, g, state)]


def cotangents(B, T, H, K, V, seed):
    rng = np.random.default_rng(seed + 1000)
    return [rng.normal(0, 1, (B, T, H, V)), rng.normal(0, 1, (B, H, K, V))]


def compare_kernel_to_reference(inputs, seed, rtol=2e-4, atol=2e-5, cot=None, scale=None):
    q, v = inputs[0], inputs[2]
    B, T, H, K = q.shape
    cot = cotangents(B, T, H, K, v.shape[3], seed) if cot is None else cot
    out_k, g_k = run_with_grads(lambda *a: gla(*a, scale=scale), inputs, cot)
    out_r, g_r = run_with_grads(lambda *a: reference.gla(*a, scale=scale), inputs, cot)
    check_against_reference(inputs, out_k, g_k, out_r, g_r, rtol, atol)


def check_against_reference(inputs, out_k, g_k, out_r, g_r, rtol, atol):
    for name, a, b in zip(["o", "final state"], out_k, out_r):
        assert_close(a, b, rtol, atol, name)
    names = [n for n, x in zip(NAMES, inputs) if x is not None]
    assert len(g_k) == len(names)
    # Where no path reaches the loss (q when only the state is used) the reference's gradient is None: zero.
    g_r = [np.zeros_like(a) if b is None else b for a, b in zip(g_k, g_r)]
    for name, a, b in zip(names, g_k, g_r):
        if name == "g":
            assert_close_dg(a, b, inputs[0], inputs[1], g_r[0], g_r[1], rtol, atol)
        else:
            assert_close(a, b, rtol, atol, f"grad {name}")


@pytest.mark.parametrize(
    "B,T,H,K,V",
    [(1, 1, 1, 1, 1), (2, 1, 3, 8, 5), (2, 17, 2, 8, 8), (3, 64, 2, 4, 6), (1, 65, 2, 16, 7), (2, 100, 1, 5, 12),
     (1, 129, 2, 8, 8)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_kernel_matches_reference(B, T, H, K, V, with_state):
    seed = B * 1000 + T * 10 + K + V
    compare_kernel_to_reference(make_inputs(B, T, H, K, V, seed, with_state), seed)


def test_kernel_matches_reference_long_sequence():
    # Gates from e^-20 to 1 - 1e-6: channels with gates near 1 accumulate over the whole 1100 steps.
    compare_kernel_to_reference(make_inputs(1, 1100, 2, 4, 3, 7, with_state=True), 7, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("g_range", [(-1e-5, -1e-6), (-20.0, -15.0), (-20.0, -1e-6)])
def test_gates_near_one_and_near_zero(g_range):
    # Near 1: no forgetting, the state is a plain running sum; near 0: each state is almost only the last k^T v.
    compare_kernel_to_reference(make_inputs(2, 70, 2, 6, 5, 5, True, g_range), 5, rtol=1e-3, atol=1e-4)


def test_gates_near_zero_keep_only_the_last_token():
    q, k, v, g, _ = make_inputs(1, 5, 1, 3, 2, 8, g_range=(-60.0, -50.0), dtype=np.float64)
    o, s = gla(*(paddle.to_tensor(a) for a in (q, k, v, g)))
    expected = (q[:, :, :, :, None] * k[:, :, :, :, None] * v[:, :, :, None, :]).sum(3) * 3 ** -0.5
    assert_close(o.numpy(), expected, 1e-12, 1e-14)
    assert_close(s.numpy(), k[:, -1, :, :, None] * v[:, -1, :, None, :], 1e-12, 1e-14)


def test_explicit_scale_and_float64_scale_is_exact():
    inputs = make_inputs(2, 9, 2, 3, 4, 2, with_state=True, dtype=np.float64)
    compare_kernel_to_reference(inputs, 2, rtol=1e-12, atol=1e-13)  # K ** -0.5 is not a float32 number
    compare_kernel_to_reference(inputs, 2, rtol=1e-12, atol=1e-13, scale=0.3)


def test_chunks_with_state_equal_one_pass_values_and_gradients():
    inputs = make_inputs(2, 130, 2, 5, 6, 21, with_state=True)
    B, T, H, K, V = 2, 130, 2, 5, 6
    cot = cotangents(B, T, H, K, V, 21)

    def chunked(q, k, v, g, s):
        outs = []
        for a, b in [(0, 1), (1, 17), (17, 80), (80, 130)]:
            o, s = gla(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], s)
            outs.append(o)
        return paddle.concat(outs, axis=1), s

    out_c, g_c = run_with_grads(chunked, inputs, cot)
    out_o, g_o = run_with_grads(gla, inputs, cot)
    for name, a, b in zip(["o", "state"] + NAMES, out_c + g_c, out_o + g_o):
        assert_close(a, b, 1e-5, 1e-6, name)


@pytest.mark.parametrize("which", [0, 1])
def test_one_output_reaching_the_loss(which):
    # The other output's gradient arrives undefined in eager mode: the kernel must treat it as zero.
    inputs = make_inputs(2, 20, 2, 4, 3, 4, with_state=True)
    cot = cotangents(2, 20, 2, 4, 3, 4)
    cot[1 - which] = None
    compare_kernel_to_reference(inputs, 4, cot=cot)


def test_repeated_calls_are_bitwise_identical():
    inputs = [paddle.to_tensor(a) for a in make_inputs(2, 50, 3, 8, 8, 6, with_state=True)]
    o1, s1 = gla(*inputs)
    o2, s2 = gla(*inputs)
    assert np.array_equal(o1.numpy(), o2.numpy()) and np.array_equal(s1.numpy(), s2.numpy())


def fd_check(fn, seed, T, rtol, atol):
    rng = np.random.default_rng(seed)
    B, H, K, V = 1, 2, 3, 2
    inputs = make_inputs(B, T, H, K, V, seed, with_state=True, g_range=(-3.0, -0.01), dtype=np.float64)
    co, cs = rng.normal(0, 1, (B, T, H, V)), rng.normal(0, 1, (B, H, K, V))
    _, analytic = run_with_grads(fn, inputs, [co, cs])
    loss = lambda out: float((out[0].numpy() * co).sum() + (out[1].numpy() * cs).sum())  # noqa: E731
    for i, name in enumerate(NAMES):
        numeric = finite_difference(fn, [a.copy() for a in inputs], loss, i)
        assert_close(analytic[i], numeric, rtol, atol, name)


def test_reference_matches_finite_differences():
    fd_check(reference.gla, 0, 5, 1e-6, 1e-7)


def test_kernel_float64_matches_finite_differences():
    fd_check(gla, 3, 9, 1e-6, 1e-7)


@pytest.mark.parametrize("dtype,tol", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_half_inputs_accumulate_in_float32(dtype, tol):
    inputs = make_inputs(2, 40, 2, 16, 8, 9, with_state=True, g_range=(-5.0, -1e-3))
    half = [paddle.to_tensor(a).astype(dtype) for a in inputs[:4]]
    state = paddle.to_tensor(inputs[4])
    o, s = gla(*half, state)
    assert o.dtype == half[0].dtype and s.dtype == paddle.float32
    o_r, s_r = reference.gla(*(h.astype("float32") for h in half), state)
    assert_close(o.astype("float32").numpy(), o_r.numpy(), tol, tol, "o")
    assert_close(s.numpy(), s_r.numpy(), 1e-5, 1e-6, "state")  # same rounded inputs, float32 accumulation
    # Gradients: the same cotangents through both, compared against the float32 reference on the rounded inputs.
    cot = cotangents(2, 40, 2, 16, 8, 9)
    rounded = [h.astype("float32").numpy() for h in half] + [inputs[4]]
    _, g_h = run_with_grads(lambda *a: gla(*(x.astype(dtype) for x in a[:4]), a[4]), rounded, cot)
    _, g_r = run_with_grads(reference.gla, rounded, cot)
    for name, a, b in zip(NAMES, g_h, g_r):
        assert_close(a, b, tol, tol, f"grad {name}")


def test_state_from_reference_and_kernel_interchange():
    q, k, v, g, _ = (paddle.to_tensor(a) if a is not None else None for a in make_inputs(2, 30, 2, 4, 5, 12))
    _, s_ref = reference.gla(q[:, :10], k[:, :10], v[:, :10], g[:, :10])
    o_k, _ = gla(q[:, 10:], k[:, 10:], v[:, 10:], g[:, 10:], s_ref)
    o_full, _ = gla(q, k, v, g)
    assert_close(o_k.numpy(), o_full.numpy()[:, 10:], 1e-5, 1e-6)


def gla_with_state(q, k, v, g, s):
    return gla(q, k, v, g, s)


@pytest.mark.slow
def test_to_static_matches_eager():
    inputs = [paddle.to_tensor(a, stop_gradient=False) for a in make_inputs(2, 12, 2, 4, 3, 13, with_state=True)]
    spec = [paddle.static.InputSpec([None, None, 2, 4], "float32")] * 2 + [
        paddle.static.InputSpec([None, None, 2, 3], "float32"), paddle.static.InputSpec([None, None, 2, 4], "float32"),
        paddle.static.InputSpec([None, 2, 4, 3], "float32")]
    # Default (SOT) mode with dynamic batch and time: exercises InferShape/InferDtype of the op and its grad op.
    # (full_graph=True, the AST mode, cannot convert the shared argument checks in checks.py.)
    static_fn = paddle.jit.to_static(gla_with_state, input_spec=spec)
    results = []
    for fn in (gla, static_fn):
        o, s = fn(*inputs)
        grads = paddle.grad((o * o).sum() + s.sum(), inputs)
        results.append([o.numpy(), s.numpy()] + [x.numpy() for x in grads])
    for a, b in zip(*results):
        assert_close(a, b, 1e-6, 1e-7)


def bad(**changes):
    args = dict(q=paddle.zeros([2, 3, 4, 5]), k=paddle.zeros([2, 3, 4, 5]), v=paddle.zeros([2, 3, 4, 6]),
                g=paddle.zeros([2, 3, 4, 5]), state=None)
    args.update(changes)
    return args


@pytest.mark.parametrize("fn", [gla, reference.gla])
@pytest.mark.parametrize(
    "changes,error,message",
    [
        (dict(q=paddle.zeros([2, 3, 5])), ValueError, "q must have 4 dimensions [B, T, H, K], got shape [2, 3, 5]"),
        (dict(v=paddle.zeros([2, 3, 4])), ValueError, "v must have 4 dimensions [B, T, H, V]"),
        (dict(k=paddle.zeros([2, 3, 4, 6])), ValueError, "k has shape [2, 3, 4, 6], expected [2, 3, 4, 5]"),
        (dict(g=paddle.zeros([2, 4, 4, 5])), ValueError, "g has shape [2, 4, 4, 5], expected [2, 3, 4, 5]"),
        (dict(v=paddle.zeros([2, 3, 2, 6])), ValueError, "v has shape [2, 3, 2, 6], expected [2, 3, 4, 6]"),
        (dict(v=paddle.zeros([1, 3, 4, 6])), ValueError, "v has shape [1, 3, 4, 6], expected [2, 3, 4, 6]"),
        (dict(state=paddle.zeros([2, 4, 6, 5])), ValueError, "state has shape [2, 4, 6, 5], expected [2, 4, 5, 6]"),
        (dict(state=paddle.zeros([2, 4, 5])), ValueError, "state must have 4 dimensions [B, H, K, V]"),
        (dict(q=paddle.zeros([2, 3, 4, 5], "int32")), TypeError, "q has dtype int32"),
        (dict(g=np.zeros([2, 3, 4, 5], np.float32)), TypeError, "g must be a paddle.Tensor"),
        (dict(v=paddle.zeros([2, 3, 4, 6], "float64")), TypeError, "inputs must share one dtype"),
        (dict(q=paddle.zeros([2, 0, 4, 5]), k=paddle.zeros([2, 0, 4, 5]), v=paddle.zeros([2, 0, 4, 6]),
              g=paddle.zeros([2, 0, 4, 5])), ValueError, "q is empty"),
        (dict(v=paddle.zeros([2, 3, 4, 0])), ValueError, "v is empty"),
    ],
)
def test_bad_arguments_raise_one_clear_error(fn, changes, error, message):
    with pytest.raises(error) as info:
        fn(**bad(**changes))
    assert message in str(info.value)


# ---- CUDA (skipped on CPU-only builds): the chunked kernel for T > 64, the recurrent one for T <= 64 ----
cuda = pytest.mark.skipif(not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0,
                          reason="needs a CUDA build of Paddle and a GPU")


def run_on_gpu(fn, inputs, cot, dtype):
    paddle.set_device("gpu")
    try:
        cast = lambda *a: fn(*(x.astype(dtype) for x in a[:4]), *a[4:])  # noqa: E731
        return run_with_grads(cast, inputs, cot)
    finally:
        paddle.set_device("cpu")


@cuda
@pytest.mark.parametrize("T", [1, 17, 64, 65, 200, 1030])
@pytest.mark.parametrize("dtype,tol", [("float32", 2e-4), ("float16", 5e-3), ("bfloat16", 3e-2)])
def test_cuda_matches_reference(T, dtype, tol):
    B, H, K, V = 2, 3, 40, 72  # K and V not multiples of the kernels' tiles
    inputs = make_inputs(B, T, H, K, V, T, with_state=True, g_range=(-8.0, -1e-6))
    # Round the inputs to the tested dtype once, so that the float32 reference sees the same numbers.
    inputs = [paddle.to_tensor(a).astype(dtype).astype("float32").numpy() for a in inputs[:4]] + [inputs[4]]
    cot = cotangents(B, T, H, K, V, T)
    out_d, g_d = run_on_gpu(gla, inputs, cot, dtype)
    out_r, g_r = run_with_grads(reference.gla, inputs, cot)
    check_against_reference(inputs, out_d, g_d, out_r, g_r, tol, tol)


@cuda
def test_cuda_is_deterministic_and_handles_steep_gates():
    inputs = make_inputs(1, 300, 2, 64, 64, 3, with_state=True, g_range=(-20.0, -1e-6))
    cot = cotangents(1, 300, 2, 64, 64, 3)
    first = run_on_gpu(gla, inputs, cot, "float16")
    second = run_on_gpu(gla, inputs, cot, "float16")
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        assert np.isfinite(a).all() and np.array_equal(a, b)
