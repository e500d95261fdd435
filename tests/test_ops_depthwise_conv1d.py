"""depthwise_conv1d operator (the TimeX kernel with a short filter, any sequence length): kernel against the conv1d
reference (values and gradients), and equal to TimeX where the filter covers the sequence."""
import numpy as np
import paddle
import pytest
from helpers import assert_close, conv_inputs as inputs, run_with_grads

from paddle_lrnn import ops
from paddle_lrnn.ops import reference


@pytest.mark.parametrize("B,C,T,L", [(2, 3, 1, 4), (2, 5, 9, 4), (1, 7, 300, 4), (2, 3, 100, 1), (1, 4, 37, 37),
                                     (2, 3, 5, 9), (1, 2, 700, 300)])
def test_depthwise_conv1d_any_length_matches_reference(B, C, T, L):
    w, x = inputs(B, C, T, L, 3 * T + L)
    cot = [np.random.default_rng(7).normal(0, 1, (B, C, T))]
    out_k, g_k = run_with_grads(ops.depthwise_conv1d, [w, x], cot)
    out_r, g_r = run_with_grads(reference.depthwise_conv1d, [w, x], cot)
    for name, a, b in zip(["out", "gw", "gx"], out_k + g_k, out_r + g_r):
        assert_close(a, b, 1e-4, 1e-5, name)


def test_depthwise_conv1d_equals_timex_when_the_kernel_covers_the_sequence():
    w, x = inputs(2, 3, 20, 32, 11)
    a = ops.depthwise_conv1d(paddle.to_tensor(w), paddle.to_tensor(x)).numpy()
    b = ops.timex(paddle.to_tensor(w), paddle.to_tensor(x)).numpy()
    np.testing.assert_array_equal(a, b)
