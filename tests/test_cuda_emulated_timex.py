"""TimeX's CUDA kernels (custom_ops/kernels/timex.cuh, also depthwise_conv1d's), run on CPU threads under
tests/cuda_emu's emulation of CUDA, against the CPU kernel through the Paddle op (lrnn_timex): outputs and
gradients in float32, float64, float16 and bfloat16, on shapes that cross every tile boundary. Outputs start as NaN
poison inside guard zones (tests/cuda_emu/build.py's Arena), so an element a kernel never writes, or a write out of
bounds, fails the test. A few cases also rerun under the serial schedules (one thread at a time, in thread order,
reverse order and at random), which must agree bit for bit with the parallel run."""
import numpy as np
import pytest
from cuda_emu import build
from cuda_emu.build import Arena, from_storage, round_to, to_storage
from cuda_emu.kernel_tests import HALF, compare, f64, gradients, leaf, library_fixture, under_schedules

from paddle_lrnn.ops.library import library

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

# Tolerances of the emulated CUDA kernel against the CPU kernel on the same inputs and dtype. Both accumulate in
# float32 (float64 for float64) in the same order; they differ only in exp (glibc's expf vs the CPU kernels'
# polynomial) and FMA contraction, so half-precision outputs may differ by one rounding of the stored value.
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13), "float16": (2e-3, 1e-3), "bfloat16": (1.6e-2, 8e-3)}

lib = library_fixture("timex")


def timex_inputs(B, C, T, L, seed, dtype):
    rng = np.random.default_rng(seed)
    return (round_to(rng.normal(0, 1, (C, L)), dtype), round_to(rng.normal(0, 1, (B, C, T)), dtype),
            round_to(rng.normal(0, 1, (B, C, T)), dtype))


def timex_cpu(w, x, g, eps, dtype):
    tw, tx = leaf(w, dtype), leaf(x, dtype)
    out = library().lrnn_timex(tw, tx, float(eps))
    return [f64(out), *gradients([out], [g], [tw, tx])]


def timex_emulated(lib, w, x, g, eps, dtype):
    sfx, sto = build.DTYPES[dtype][0], build.DTYPES[dtype][1]
    B, C, T = x.shape
    L = w.shape[1]
    ar = Arena()
    W, X, G = (ar.input(to_storage(a, dtype)) for a in (w, x, g))
    out, gw, gx = ar.output((B, C, T), sto), ar.output((C, L), sto), ar.output((B, C, T), sto)
    lib.call(f"timex_forward_{sfx}", B, C, T, L, W, X, eps, out, None)
    lib.call(f"timex_backward_{sfx}", B, C, T, L, W, X, G, gw, gx, None)
    ar.check()
    return [from_storage(a, dtype) for a in (out, gw, gx)]


TIMEX_SHAPES = [
    (1, 1, 1, 1),
    (2, 3, 1, 8),
    (2, 5, 7, 7),
    (3, 4, 13, 40),  # unused columns get zero gradient
    (2, 3, 255, 256),  # one tile, one short
    (1, 2, 256, 256),  # exactly one tile
    (2, 2, 257, 300),  # one past a tile
    (1, 3, 300, 513),  # gw grid crosses two tile boundaries, half of them past T
    (1, 2, 513, 520),
]
TIMEX_NAMES = ["out", "gw", "gx"]


@pytest.mark.parametrize("B,C,T,L", TIMEX_SHAPES)
def test_float32_matches_cpu_kernel(lib, B, C, T, L):
    w, x, g = timex_inputs(B, C, T, L, B + C + T + L, "float32")
    for eps in (0.0, 0.5):
        got = timex_emulated(lib, w, x, g, eps, "float32")
        exp = timex_cpu(w, x, g, eps, "float32")
        compare(got, exp, TIMEX_NAMES, (1e-5, 1e-6), f"eps={eps}")


@pytest.mark.parametrize("dtype", ["float64", *HALF])
@pytest.mark.parametrize("B,C,T,L", [(2, 5, 7, 7), (2, 2, 257, 300), (1, 3, 300, 513)])
def test_other_dtypes_match_cpu_kernel(lib, dtype, B, C, T, L):
    w, x, g = timex_inputs(B, C, T, L, 3 * T + L, dtype)
    got = timex_emulated(lib, w, x, g, 0.25, dtype)
    exp = timex_cpu(w, x, g, 0.25, dtype)
    compare(got, exp, TIMEX_NAMES, TOL[dtype], f"{dtype} vs CPU {dtype}")
    if dtype in HALF:
        ref = timex_cpu(w, x, g, 0.25, "float32")
        compare(got, ref, TIMEX_NAMES, (3 * TOL[dtype][0], 3 * TOL[dtype][1]), f"{dtype} vs CPU float32")


def test_empty_batch_launches_nothing_and_sums_to_zero(lib):
    # The Paddle binding accepts B = 0, the CPU kernel gives zero weight gradients; a CUDA grid of 0 blocks would be a
    # launch error.
    wt, x = np.ones((2, 6)), np.zeros((0, 2, 4))
    np.testing.assert_array_equal(timex_emulated(lib, wt, x, x, 0.0, "float32")[1], np.zeros((2, 6)))


# ----- every schedule gives the same bits -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_serial_schedules_agree_bit_for_bit(lib, schedule, dtype):
    """No kernel may depend on the order in which threads and blocks run between barriers."""
    tx = timex_inputs(2, 2, 300, 520, 98, dtype)
    runs = under_schedules([lib], ["parallel", schedule], lambda: timex_emulated(lib, *tx, 0.5, dtype))
    for a, b in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(a, b)
