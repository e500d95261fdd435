"""WKV operator: the custom kernel against the pure-Paddle reference, the reference against finite differences and
the linear-space definition, chunked-with-state against one pass, and argument errors."""
import numpy as np
import paddle
import pytest
from helpers import assert_close, finite_difference, run_with_grads

from paddle_lrnn import ops
from paddle_lrnn.ops import reference


def make_inputs(B, T, C, seed, k_scale=1.0, w_range=(0.05, 3.0), with_state=False):
    rng = np.random.default_rng(seed)
    w = rng.uniform(*w_range, C).astype(np.float32)
    u = rng.normal(0, 1, C).astype(np.float32)
    k = (rng.normal(0, 1, (B, T, C)) * k_scale).astype(np.float32)
    v = rng.normal(0, 1, (B, T, C)).astype(np.float32)
    state = None
    if with_state:  # a state as the kernel would hand over: run a short random prefix
        prefix = [rng.normal(0, 2, (B, 5, C)).astype(np.float32), rng.normal(0, 1, (B, 5, C)).astype(np.float32)]
        _, s = ops.wkv(*(paddle.to_tensor(a) for a in (w, u, *prefix)))
        state = s.numpy()
    return w, u, k, v, state


def cotangents(B, T, C, seed):
    rng = np.random.default_rng(seed + 1000)
    return [rng.normal(0, 1, (B, T, C)), rng.normal(0, 1, (B, 3, C))]


def linear_space_wkv(w, u, k, v, eps=0.0):
    """The definition, in float64 linear space (fine for moderate k)."""
    w, u, k, v = (np.asarray(a, np.float64) for a in (w, u, k, v))
    B, T, C = k.shape
    a, b, y = np.zeros((B, C)), np.zeros((B, C)), np.zeros((B, T, C))
    for t in range(T):
        e = np.exp(u + k[:, t])
        y[:, t] = (a + e * v[:, t]) / (b + e + eps)
        a = np.exp(-w) * a + np.exp(k[:, t]) * v[:, t]
        b = np.exp(-w) * b + np.exp(k[:, t])
    return y


def compare_kernel_to_reference(w, u, k, v, state, seed, rtol=2e-4, atol=2e-5, eps=0.0):
    B, T, C = k.shape
    cot = cotangents(B, T, C, seed)
    fn_k = lambda *a: ops.wkv(*a[:4], a[4], eps=eps)  # noqa: E731
    fn_r = lambda *a: reference.wkv(*a[:4], a[4], eps=eps)  # noqa: E731
    out_k, g_k = run_with_grads(fn_k, [w, u, k, v, state], cot)
    out_r, g_r = run_with_grads(fn_r, [w, u, k, v, state], cot)
    for name, a, b in zip(["y", "state"], out_k, out_r):
        if name == "state":  # pp of an untouched state is the -1e38 marker in both
            assert_close(a, b, rtol, atol, name)
        else:
            assert_close(a, b, rtol, atol, name)
    names = ["gw", "gu", "gk", "gv", "gstate"][: len(g_k)]
    for name, a, b in zip(names, g_k, g_r):
        assert_close(a, b, rtol, atol, name)


@pytest.mark.parametrize(
    "B,T,C",
    [(1, 1, 1), (2, 1, 5), (3, 17, 7), (2, 16, 16), (2, 33, 19), (1, 100, 37), (4, 15, 33)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_kernel_matches_reference(B, T, C, with_state):
    seed = B * 1000 + T * 10 + C
    compare_kernel_to_reference(*make_inputs(B, T, C, seed, with_state=with_state), seed)


@pytest.mark.slow
def test_kernel_matches_reference_long_sequence():
    compare_kernel_to_reference(*make_inputs(2, 2048, 5, 7, w_range=(1e-3, 0.1)), 7, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("k_scale", [30.0, 60.0])
def test_extreme_keys_stay_finite_and_match(k_scale):
    # k up to +-60*4: exp(k) alone would overflow float32; the log-scaled form must not.
    w, u, k, v, _ = make_inputs(2, 40, 9, 3, k_scale=k_scale)
    k[0, 3] = 60.0
    k[1, 5] = -60.0
    k[1, 6:9] = 88.0
    compare_kernel_to_reference(w, u, k, v, None, 3, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("w_range", [(1e-6, 1e-4), (20.0, 60.0)])
def test_decay_near_zero_and_large(w_range):
    compare_kernel_to_reference(*make_inputs(2, 65, 11, 5, w_range=w_range, with_state=True), 5, rtol=1e-3, atol=1e-4)


def test_rwkv_v2_epsilon_matches_linear_space_definition():
    w, u, k, v, _ = make_inputs(2, 50, 6, 11, k_scale=3.0)
    for eps in (0.0, 1e-16, 1e-2):
        y, _ = ops.wkv(*(paddle.to_tensor(a) for a in (w, u, k, v)), eps=eps)
        assert_close(y.numpy(), linear_space_wkv(w, u, k, v, eps), 2e-5, 1e-6, f"eps={eps}")
    compare_kernel_to_reference(w, u, k, v, None, 11, eps=1e-2)


def test_eps_zeroes_outputs_whose_keys_underflow():
    # As RWKV-v2 in float32: exp(k) underflows to 0 for k < -88, so num = 0 and y = 0 / (0 + 1e-16) = 0.
    w, u, k, v, _ = make_inputs(1, 8, 3, 2)
    k[:] = -120.0
    y, _ = ops.wkv(*(paddle.to_tensor(a) for a in (w, u, k, v)), eps=1e-16)
    assert np.abs(y.numpy()).max() < 1e-6


def test_chunks_with_state_equal_one_pass_values_and_gradients():
    w, u, k, v, _ = make_inputs(3, 45, 13, 21)
    B, T, C = k.shape
    cot = cotangents(B, T, C, 21)

    def chunked(w, u, k, v):
        ys, s = [], None
        for a, b in [(0, 1), (1, 17), (17, 30), (30, 45)]:
            y, s = ops.wkv(w, u, k[:, a:b], v[:, a:b], s)
            ys.append(y)
        return paddle.concat(ys, axis=1), s

    out_c, g_c = run_with_grads(chunked, [w, u, k, v], cot)
    out_o, g_o = run_with_grads(lambda *a: ops.wkv(*a), [w, u, k, v], cot)
    for a, b in zip(out_c + g_c, out_o + g_o):
        assert_close(a, b, 1e-4, 1e-5)


def test_reference_matches_finite_differences():
    rng = np.random.default_rng(0)
    B, T, C = 2, 6, 3
    w = rng.uniform(0.1, 2, C)
    u = rng.normal(0, 1, C)
    k = rng.normal(0, 2, (B, T, C))
    v = rng.normal(0, 1, (B, T, C))
    _, s0 = reference.wkv(*(paddle.to_tensor(a) for a in (w, u, k[:, :3], v[:, :3])))
    s0 = s0.numpy()
    cy, cs = rng.normal(0, 1, (B, T, C)), rng.normal(0, 1, (B, 3, C))
    inputs = [w, u, k, v, s0]
    fn = lambda *a: reference.wkv(*a, eps=1e-3)  # noqa: E731
    _, analytic = run_with_grads(fn, inputs, [cy, cs])
    loss = lambda out: float((out[0].numpy() * cy).sum() + (out[1].numpy() * cs).sum())  # noqa: E731
    for i, name in enumerate(["w", "u", "k", "v", "state"]):
        numeric = finite_difference(fn, [a.copy() for a in inputs], loss, i)
        assert_close(analytic[i], numeric, 1e-5, 1e-6, name)


def test_kernel_float64_matches_finite_differences():
    rng = np.random.default_rng(3)
    B, T, C = 1, 20, 2  # crosses a checkpoint chunk boundary
    inputs = [rng.uniform(0.1, 2, C), rng.normal(0, 1, C), rng.normal(0, 2, (B, T, C)), rng.normal(0, 1, (B, T, C))]
    cy, cs = rng.normal(0, 1, (B, T, C)), rng.normal(0, 1, (B, 3, C))
    _, analytic = run_with_grads(ops.wkv, inputs, [cy, cs])
    loss = lambda out: float((out[0].numpy() * cy).sum() + (out[1].numpy() * cs).sum())  # noqa: E731
    for i in range(4):
        numeric = finite_difference(ops.wkv, [a.copy() for a in inputs], loss, i)
        assert_close(analytic[i], numeric, 1e-6, 1e-7, f"input {i}")


@pytest.mark.parametrize("dtype,tol", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_half_inputs_accumulate_in_float32(dtype, tol):
    w, u, k, v, _ = make_inputs(2, 40, 16, 9)
    kh, vh = paddle.to_tensor(k).astype(dtype), paddle.to_tensor(v).astype(dtype)
    y, s = ops.wkv(paddle.to_tensor(w), paddle.to_tensor(u), kh, vh)
    assert y.dtype == kh.dtype and s.dtype == paddle.float32
    yr, _ = reference.wkv(paddle.to_tensor(w), paddle.to_tensor(u), kh.astype("float32"), vh.astype("float32"))
    assert_close(y.astype("float32").numpy(), yr.numpy(), tol, tol)


def test_state_from_reference_and_kernel_interchange():
    w, u, k, v, _ = make_inputs(2, 30, 7, 4)
    t = [paddle.to_tensor(a) for a in (w, u, k, v)]
    _, s_ref = reference.wkv(t[0], t[1], t[2][:, :10], t[3][:, :10])
    y_k, _ = ops.wkv(t[0], t[1], t[2][:, 10:], t[3][:, 10:], s_ref)
    y_full, _ = ops.wkv(*t)
    assert_close(y_k.numpy(), y_full.numpy()[:, 10:], 1e-5, 1e-6)


def bad(**changes):
    args = dict(w=paddle.rand([4]) + 0.1, u=paddle.zeros([4]), k=paddle.zeros([2, 3, 4]), v=paddle.zeros([2, 3, 4]),
                state=None)
    args.update(changes)
    return args


@pytest.mark.parametrize("fn", [ops.wkv, reference.wkv])
@pytest.mark.parametrize(
    "changes,error,message",
    [
        (dict(k=paddle.zeros([3, 4])), ValueError, "k must have 3 dimensions"),
        (dict(v=paddle.zeros([2, 5, 4])), ValueError, "v has shape [2, 5, 4], expected [2, 3, 4]"),
        (dict(w=paddle.zeros([5])), ValueError, "w has shape [5], expected [4]"),
        (dict(u=paddle.zeros([4, 1])), ValueError, "u must have 1 dimensions"),
        (dict(k=paddle.zeros([2, 3, 4], "int64")), TypeError, "k has dtype int64"),
        (dict(k=np.zeros([2, 3, 4], np.float32)), TypeError, "k must be a paddle.Tensor"),
        (dict(v=paddle.zeros([2, 3, 4], "float64")), TypeError, "inputs must share one dtype"),
        (dict(k=paddle.zeros([2, 0, 4]), v=paddle.zeros([2, 0, 4])), ValueError, "k is empty"),
        (dict(k=paddle.zeros([0, 3, 4]), v=paddle.zeros([0, 3, 4])), ValueError, "k is empty"),
        (dict(state=paddle.zeros([2, 2, 4])), ValueError, "state has shape [2, 2, 4], expected [2, 3, 4]"),
    ],
)
def test_bad_arguments_raise_one_clear_error(fn, changes, error, message):
    with pytest.raises(error) as info:
        fn(**bad(**changes))
    assert message in str(info.value)
