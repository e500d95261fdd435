"""MRU scan operator: the custom kernel against the pure-Paddle reference (values and gradients), against a
Hillis-Steele scan (the original's ordering), the reference and the float64 kernel against finite differences,
det-1 matrices built as the model builds them, chunked-with-state against one pass, half inputs, argument errors."""
import numpy as np
import paddle
import pytest
from helpers import assert_close, finite_difference, ldu_matrices, near_identity, run_with_grads

from paddle_lrnn.ops import reference
from paddle_lrnn.ops.mru_scan import mru_scan


def cotangents(B, H, T, d, seed):
    rng = np.random.default_rng(seed + 1000)
    return [rng.normal(0, 1, (B, H, T, d, d)), rng.normal(0, 1, (B, H, d, d))]


def random_state(B, H, d, seed, dtype=np.float32):
    return np.random.default_rng(seed + 2000).normal(0, 1, (B, H, d, d)).astype(dtype)


def compare_kernel_to_reference(m, state, seed, rtol=1e-4, atol=1e-5, cot=None):
    B, H, T, d, _ = m.shape
    cot = cotangents(B, H, T, d, seed) if cot is None else cot
    out_k, g_k = run_with_grads(mru_scan, [m, state], cot)
    out_r, g_r = run_with_grads(reference.mru_scan, [m, state], cot)
    for name, a, b in zip(["prefix", "state"], out_k, out_r):
        assert_close(a, b, rtol, atol, name)
    for name, a, b in zip(["grad m", "grad state"], g_k, g_r):
        assert_close(a, b, rtol, atol, name)
    return out_k, g_k


@pytest.mark.parametrize(
    "B,H,T,d",
    [(1, 1, 1, 1), (2, 3, 1, 4), (2, 1, 7, 1), (1, 2, 5, 2), (2, 2, 33, 4), (3, 1, 17, 8), (1, 2, 40, 16),
     (2, 1, 9, 32), (1, 1, 20, 3), (2, 1, 11, 5), (1, 1, 6, 40)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_kernel_matches_reference(B, H, T, d, with_state):
    seed = B * 1000 + H * 100 + T * 10 + d
    m = near_identity((B, H, T, d, d), seed)
    state = random_state(B, H, d, seed) if with_state else None
    compare_kernel_to_reference(m, state, seed)


@pytest.mark.parametrize("d", [8, 16])
def test_kernel_matches_reference_long_sequence(d):
    m = near_identity((1, 1, 4096, d, d), d, scale=0.05)
    compare_kernel_to_reference(m, random_state(1, 1, d, d), d, rtol=1e-3, atol=1e-4)


def test_output_dtypes_and_final_state_is_last_prefix():
    for dtype, acc in [("float32", paddle.float32), ("float64", paddle.float64)]:
        m = paddle.to_tensor(near_identity((2, 2, 5, 4, 4), 1).astype(dtype))
        prefix, state = mru_scan(m)
        assert prefix.dtype == m.dtype and state.dtype == acc
        assert prefix.shape == [2, 2, 5, 4, 4] and state.shape == [2, 2, 4, 4]
        np.testing.assert_array_equal(prefix.numpy()[:, :, -1], state.numpy())


def test_no_state_means_identity():
    m = near_identity((2, 3, 9, 4, 4), 5)
    eye = np.broadcast_to(np.eye(4, dtype=np.float32), (2, 3, 4, 4)).copy()
    p0, s0 = mru_scan(paddle.to_tensor(m))
    p1, s1 = mru_scan(paddle.to_tensor(m), paddle.to_tensor(eye))
    np.testing.assert_array_equal(p0.numpy(), p1.numpy())
    np.testing.assert_array_equal(s0.numpy(), s1.numpy())
    # the first prefix is M_1 itself, and the product order is S0 @ M_1 @ M_2 (new matrix on the right)
    np.testing.assert_array_equal(p0.numpy()[:, :, 0], m[:, :, 0])
    assert_close(p0.numpy()[:, :, 1], m[:, :, 0] @ m[:, :, 1], 1e-6, 1e-7)
    assert not np.allclose(m[:, :, 0] @ m[:, :, 1], m[:, :, 1] @ m[:, :, 0], atol=1e-3)


@pytest.mark.parametrize("d", [4, 8, 16])
def test_determinant_one_matrices_as_the_model_builds_them(d):
    m = ldu_matrices((2, 2, 300, d, d), d)
    np.testing.assert_allclose(np.linalg.det(m.astype(np.float64)), 1.0, rtol=1e-5)
    (prefix, state), _ = compare_kernel_to_reference(m, None, d, rtol=2e-4, atol=2e-5)
    assert np.isfinite(prefix).all()
    # det is multiplicative: every prefix keeps det 1 up to float32 rounding
    np.testing.assert_allclose(np.linalg.det(prefix[:, :, ::37]), 1.0, rtol=2e-3)
    np.testing.assert_allclose(np.linalg.det(state), 1.0, rtol=2e-3)


def hillis_steele(m, state=None):
    """The original's scan, in float32 NumPy: for stride s = 1, 2, 4, ..., every j >= s becomes H[j-s] @ H[j] using
    the pre-stage values. A previous state is prepended as matrix 0 and its output dropped, as the original does."""
    h = m if state is None else np.concatenate([state[:, :, None], m], axis=2)
    h = h.astype(np.float32).copy()
    s = 1
    while s < h.shape[2]:
        pre = h.copy()
        h[:, :, s:] = pre[:, :, :-s] @ pre[:, :, s:]
        s *= 2
    return h if state is None else h[:, :, 1:]


@pytest.mark.parametrize("T,d,with_state", [(1, 4, False), (13, 8, True), (64, 16, False), (100, 5, True)])
def test_agrees_with_hillis_steele_ordering(T, d, with_state):
    m = ldu_matrices((2, 2, T, d, d), T + d, scale=0.05)
    state = random_state(2, 2, d, T) if with_state else None
    prefix, final = mru_scan(paddle.to_tensor(m), None if state is None else paddle.to_tensor(state))
    hs = hillis_steele(m, state)
    # different association orders of the same float32 product: rounding-level differences only
    assert_close(prefix.numpy(), hs, 1e-5, 2e-6, "prefix")
    assert_close(final.numpy(), hs[:, :, -1], 1e-5, 2e-6, "state")


def test_chunks_with_state_equal_one_pass_values_and_gradients():
    B, H, T, d = 2, 2, 45, 8
    m = near_identity((B, H, T, d, d), 21)
    state = random_state(B, H, d, 21)
    cot = cotangents(B, H, T, d, 21)

    def chunked(m, state):
        prefixes, s = [], state
        for a, b in [(0, 1), (1, 17), (17, 30), (30, 45)]:
            p, s = mru_scan(m[:, :, a:b], s)
            prefixes.append(p)
        return paddle.concat(prefixes, axis=2), s

    out_c, g_c = run_with_grads(chunked, [m, state], cot)
    out_o, g_o = run_with_grads(mru_scan, [m, state], cot)
    for name, a, b in zip(["prefix", "state", "grad m", "grad state"], out_c + g_c, out_o + g_o):
        assert_close(a, b, 1e-5, 1e-6, name)


@pytest.mark.parametrize("which", ["prefix", "state"])
def test_gradient_when_only_one_output_reaches_the_loss(which):
    B, H, T, d = 2, 1, 12, 4
    m = near_identity((B, H, T, d, d), 8)
    state = random_state(B, H, d, 8)
    cot = cotangents(B, H, T, d, 8)
    cot[1 if which == "prefix" else 0] = None
    compare_kernel_to_reference(m, state, 8, cot=cot)


def test_incoming_gradients_are_not_modified():
    m = paddle.to_tensor(near_identity((1, 2, 10, 4, 4), 3), stop_gradient=False)
    gp = paddle.to_tensor(np.random.default_rng(0).normal(0, 1, (1, 2, 10, 4, 4)).astype(np.float32))
    gs = paddle.to_tensor(np.random.default_rng(1).normal(0, 1, (1, 2, 4, 4)).astype(np.float32))
    gp_before, gs_before = gp.numpy().copy(), gs.numpy().copy()
    prefix, state = mru_scan(m)
    paddle.grad([prefix, state], [m], grad_outputs=[gp, gs])
    np.testing.assert_array_equal(gp.numpy(), gp_before)
    np.testing.assert_array_equal(gs.numpy(), gs_before)


def scan_for_to_static(m, state):
    return mru_scan(m, state)


@pytest.mark.slow
def test_to_static_matches_eager():
    m = near_identity((3, 2, 5, 4, 4), 12)
    state = random_state(3, 2, 4, 12)
    cot = cotangents(3, 2, 5, 4, 12)
    spec = [paddle.static.InputSpec([None, 2, None, 4, 4], "float32"), paddle.static.InputSpec([None, 2, 4, 4],
                                                                                             "float32")]
    out_e, g_e = run_with_grads(mru_scan, [m, state], cot)  # eager first: it loads the operator library
    static_fn = paddle.jit.to_static(scan_for_to_static, input_spec=spec)
    out_s, g_s = run_with_grads(static_fn, [m, state], cot)
    for name, a, b in zip(["prefix", "state", "grad m", "grad state"], out_s + g_s, out_e + g_e):
        assert_close(a, b, 1e-6, 1e-7, name)


def fd_loss(cot):
    return lambda out: float((out[0].numpy() * cot[0]).sum() + (out[1].numpy() * cot[1]).sum())


def test_reference_matches_finite_differences():
    B, H, T, d = 1, 2, 4, 3
    m = near_identity((B, H, T, d, d), 30, dtype=np.float64)
    state = random_state(B, H, d, 30, np.float64)
    cot = cotangents(B, H, T, d, 30)
    _, analytic = run_with_grads(reference.mru_scan, [m, state], cot)
    for i, name in enumerate(["m", "state"]):
        numeric = finite_difference(reference.mru_scan, [m.copy(), state.copy()], fd_loss(cot), i)
        assert_close(analytic[i], numeric, 1e-6, 1e-7, name)


@pytest.mark.parametrize("T,d", [(6, 4), (5, 3)])  # d = 4: the templated CPU kernel; d = 3: the runtime-size one
def test_kernel_float64_matches_finite_differences(T, d):
    B, H = 1, 1
    m = near_identity((B, H, T, d, d), 40 + d, dtype=np.float64)
    state = random_state(B, H, d, 40, np.float64)
    cot = cotangents(B, H, T, d, 40)
    _, analytic = run_with_grads(mru_scan, [m, state], cot)
    for i, name in enumerate(["m", "state"]):
        numeric = finite_difference(mru_scan, [m.copy(), state.copy()], fd_loss(cot), i)
        assert_close(analytic[i], numeric, 1e-7, 1e-8, name)


@pytest.mark.parametrize("dtype,tol", [("float16", 4e-3), ("bfloat16", 3e-2)])
def test_half_inputs_accumulate_in_float32(dtype, tol):
    B, H, T, d = 2, 2, 64, 16
    mh = paddle.to_tensor(ldu_matrices((B, H, T, d, d), 9, scale=0.05)).astype(dtype)
    mh.stop_gradient = False
    prefix, state = mru_scan(mh)
    assert prefix.dtype == mh.dtype and state.dtype == paddle.float32
    m32 = mh.detach().astype("float32")
    m32.stop_gradient = False
    p_ref, s_ref = reference.mru_scan(m32)
    # accumulated in float32, so only the final rounding of each prefix (and of the inputs) shows
    assert_close(prefix.astype("float32").numpy(), p_ref.numpy(), tol, tol, "prefix")
    assert_close(state.numpy(), s_ref.numpy(), 1e-4, 1e-5, "state")
    cot = cotangents(B, H, T, d, 9)
    (g,) = paddle.grad([prefix, state], [mh], [paddle.to_tensor(cot[0]).astype(dtype), paddle.to_tensor(cot[1])
                                               .astype("float32")])
    (g_ref,) = paddle.grad([p_ref, s_ref], [m32], [paddle.to_tensor(cot[0]).astype(dtype).astype("float32"),
                                                  paddle.to_tensor(cot[1]).astype("float32")])
    assert g.dtype == mh.dtype
    assert_close(g.astype("float32").numpy(), g_ref.numpy(), 4 * tol, 4 * tol, "grad m")


def bad(**changes):
    args = dict(m=paddle.zeros([2, 3, 4, 5, 5]), state=None)
    args.update(changes)
    return args


@pytest.mark.parametrize("fn", [mru_scan, reference.mru_scan])
@pytest.mark.parametrize(
    "changes,error,message",
    [
        (dict(m=paddle.zeros([3, 4, 5, 5])), ValueError, "m must have 5 dimensions [B, H, T, d, d], got shape "
                                                         "[3, 4, 5, 5]"),
        (dict(m=paddle.zeros([2, 3, 4, 5, 6])), ValueError, "the matrices of m must be square, got m of shape "
                                                            "[2, 3, 4, 5, 6]; expected [B, H, T, d, d]"),
        (dict(m=paddle.zeros([2, 3, 4, 5, 5], "int64")), TypeError, "m has dtype int64"),
        (dict(m=np.zeros([2, 3, 4, 5, 5], np.float32)), TypeError, "m must be a paddle.Tensor"),
        (dict(m=paddle.zeros([2, 3, 0, 5, 5])), ValueError, "m is empty (shape [2, 3, 0, 5, 5])"),
        (dict(m=paddle.zeros([2, 3, 4, 0, 0])), ValueError, "m is empty"),
        (dict(state=paddle.zeros([2, 3, 4, 5])), ValueError, "state has shape [2, 3, 4, 5], expected [2, 3, 5, 5] "
                                                             "([B, H, d, d] for m of shape [2, 3, 4, 5, 5])"),
        (dict(state=paddle.zeros([2, 5, 5])), ValueError, "state must have 4 dimensions [B, H, d, d]"),
        (dict(state=paddle.zeros([2, 3, 5, 5], "int32")), TypeError, "state has dtype int32"),
    ],
)
def test_bad_arguments_raise_one_clear_error(fn, changes, error, message):
    with pytest.raises(error) as info:
        fn(**bad(**changes))
    assert message in str(info.value)
