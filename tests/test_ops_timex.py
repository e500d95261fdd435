"""TimeX operator: kernel against the conv1d reference (values and gradients), the reference against finite
differences, and RWKV-v2's time-mix computed with TimeX equal to the WKV recurrence. (The same kernel with a short
filter: tests/test_ops_depthwise_conv1d.py.)"""
import numpy as np
import paddle
import pytest
from helpers import assert_close, conv_inputs as inputs, finite_difference, run_with_grads

from paddle_lrnn import ops
from paddle_lrnn.ops import reference


@pytest.mark.parametrize(
    "B,C,T,L", [(1, 1, 1, 1), (2, 3, 1, 8), (2, 5, 7, 7), (3, 4, 13, 40), (2, 17, 255, 256), (1, 3, 300, 513)]
)
def test_kernel_matches_reference(B, C, T, L):
    w, x = inputs(B, C, T, L, B + C + T + L)
    cot = [np.random.default_rng(1).normal(0, 1, (B, C, T))]
    for eps in (0.0, 0.5):
        out_k, g_k = run_with_grads(lambda w, x: ops.timex(w, x, eps=eps), [w, x], cot)
        out_r, g_r = run_with_grads(lambda w, x: reference.timex(w, x, eps=eps), [w, x], cot)
        assert_close(out_k[0], out_r[0], 1e-4, 1e-5, "out")
        assert_close(g_k[0], g_r[0], 1e-4, 1e-5, "gw")
        assert_close(g_k[1], g_r[1], 1e-4, 1e-5, "gx")


def test_long_sequence():
    w, x = inputs(2, 3, 2048, 2048, 0)
    cot = [np.random.default_rng(2).normal(0, 1, (2, 3, 2048))]
    out_k, g_k = run_with_grads(ops.timex, [w, x], cot)
    out_r, g_r = run_with_grads(reference.timex, [w, x], cot)
    for a, b in zip(out_k + g_k, out_r + g_r):
        assert_close(a, b, 1e-3, 1e-4)


def test_unused_columns_get_zero_gradient():
    w, x = inputs(2, 3, 5, 9, 4)
    _, (gw, _) = run_with_grads(ops.timex, [w, x], [np.ones((2, 3, 5))])
    assert np.all(gw[:, :4] == 0) and np.all(gw[:, 4:] != 0)


@pytest.mark.parametrize("fn,seed,C,L,B,T", [(reference.timex, 5, 2, 6, 2, 4), (ops.timex, 6, 3, 9, 2, 7)],
                         ids=["reference", "float64 kernel"])
def test_matches_finite_differences(fn, seed, C, L, B, T):
    rng = np.random.default_rng(seed)
    w, x = rng.normal(0, 1, (C, L)), rng.normal(0, 1, (B, C, T))
    cot = rng.normal(0, 1, (B, C, T))
    _, analytic = run_with_grads(fn, [w, x], [cot])
    loss = lambda out: float((out.numpy() * cot).sum())  # noqa: E731
    for i in range(2):
        assert_close(analytic[i], finite_difference(fn, [w.copy(), x.copy()], loss, i), 1e-6, 1e-7)


def test_rwkv_v2_time_mix_with_timex_equals_wkv():
    # v2: num = TimeX(w_curve, e^k v, 0), den = TimeX(w_curve, e^k, 1e-16) with the curve [X, 1, W, W^2, ...] read
    # from the back: column L-1 = X = e^time_first, column L-1-d = W^(d-1), W = e^-e^time_decay.
    rng = np.random.default_rng(8)
    B, C, T, L = 2, 6, 23, 30
    time_decay = rng.normal(-1, 1, C)
    time_first = rng.normal(0, 0.5, C)
    k = rng.normal(0, 2, (B, T, C))
    v = rng.normal(0, 1, (B, T, C))
    lags = np.arange(L)
    curve = np.where(lags == 0, time_first[:, None], -np.exp(time_decay)[:, None] * (lags - 1))  # log weight of lag
    w_curve = paddle.to_tensor(np.exp(curve)[:, ::-1].copy(), dtype="float32")
    ek = paddle.to_tensor(np.exp(k).transpose(0, 2, 1), dtype="float32")
    ekv = paddle.to_tensor((np.exp(k) * v).transpose(0, 2, 1), dtype="float32")
    y_timex = (ops.timex(w_curve, ekv) / ops.timex(w_curve, ek, eps=1e-16)).numpy().transpose(0, 2, 1)
    y_wkv, _ = ops.wkv(*(paddle.to_tensor(a, dtype="float32") for a in (np.exp(time_decay), time_first, k, v)),
                       eps=1e-16)
    assert_close(y_timex, y_wkv.numpy(), 1e-4, 1e-5)


@pytest.mark.parametrize("fn", [ops.timex, reference.timex])
@pytest.mark.parametrize(
    "w,x,error,message",
    [
        (paddle.zeros([3, 8]), paddle.zeros([2, 3, 9]), ValueError, "sequence length 9 exceeds the kernel length 8"),
        (paddle.zeros([4, 8]), paddle.zeros([2, 3, 5]), ValueError, "w has shape [4, 8], expected [3, L]"),
        (paddle.zeros([3, 8]), paddle.zeros([3, 5]), ValueError, "x must have 3 dimensions"),
        (paddle.zeros([3, 8]), paddle.zeros([2, 3, 5], "int32"), TypeError, "x has dtype int32"),
        (paddle.zeros([3, 8]), paddle.zeros([2, 3, 0]), ValueError, "x is empty"),
    ],
)
def test_bad_arguments(fn, w, x, error, message):
    with pytest.raises(error) as info:
        fn(w, x)
    assert message in str(info.value)
