"""WKV's CUDA kernels (custom_ops/kernels/wkv.cuh), run on CPU threads under tests/cuda_emu's emulation of CUDA, against
the CPU kernel through the Paddle op (lrnn_wkv): values, checkpoints, and gradients (paddle.grad with random
cotangents, a missing cotangent being a null pointer) in float32, float64, float16 and bfloat16, on shapes that cross
every chunk and block boundary. Outputs start as NaN poison inside guard zones (tests/cuda_emu/build.py's Arena), so
an element a kernel never writes, or a write out of bounds, fails the test. A few cases also rerun under the serial
schedules (one thread at a time, in thread order, reverse order and at random), which must agree bit for bit with
the parallel run: that is how a missing barrier or a cross-block dependency shows up deterministically."""
import numpy as np
import pytest
from cuda_emu import build
from cuda_emu.build import Arena, from_storage, round_to, to_storage
from cuda_emu.kernel_tests import HALF, acc_of, compare, f64, gradients, leaf, library_fixture, np_acc, under_schedules

from paddle_lrnn.ops.library import double_attr, library

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

# Tolerances of the emulated CUDA kernel against the CPU kernel on the same inputs and dtype. Both accumulate in
# float32 (float64 for float64) in the same order; they differ only in exp (glibc's expf vs the CPU kernels'
# polynomial) and FMA contraction, so half-precision outputs may differ by one rounding of the stored value.
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13), "float16": (2e-3, 1e-3), "bfloat16": (1.6e-2, 8e-3)}

lib = library_fixture("wkv")


def wkv_inputs(B, T, C, seed, dtype, with_state=False, k_scale=1.0, w_range=(0.05, 3.0)):
    """Inputs and cotangents as float64 arrays holding values exactly representable in the kernel's dtypes."""
    rng = np.random.default_rng(seed)
    acc = acc_of(dtype)
    w = round_to(rng.uniform(*w_range, C), acc)
    u = round_to(rng.normal(0, 1, C), acc)
    k = round_to(rng.normal(0, 1, (B, T, C)) * k_scale, dtype)
    v = round_to(rng.normal(0, 1, (B, T, C)), dtype)
    if with_state:
        s0 = np.stack([rng.normal(0, 1, (B, C)), rng.uniform(0.2, 3, (B, C)), rng.normal(0, 2, (B, C))], axis=1)
    else:
        s0 = np.concatenate([np.zeros((B, 2, C)), np.full((B, 1, C), -1e38)], axis=1)
    s0 = round_to(s0, acc)
    gy = round_to(rng.normal(0, 1, (B, T, C)), dtype)
    gs1 = round_to(rng.normal(0, 1, (B, 3, C)), acc)
    return [w, u, k, v, s0], gy, gs1


def wkv_cpu(inputs, eps, dtype, gy, gs1):
    """The CPU kernel through the Paddle op: (y, s1, ckpt) and (gw, gu, gk, gv, gs0), all float64 numpy."""
    acc = acc_of(dtype)
    w, u, k, v, s0 = (leaf(x, d) for x, d in zip(inputs, [acc, acc, dtype, dtype, acc]))
    y, s1, ckpt = library().lrnn_wkv(w, u, k, v, s0, *double_attr(eps))
    return [f64(y), f64(s1), f64(ckpt)], gradients([y, s1], [gy, gs1], [w, u, k, v, s0])


def wkv_emulated(lib, inputs, eps, dtype, gy, gs1):
    """The CUDA launchers under emulation, same returns as wkv_cpu."""
    sfx = build.DTYPES[dtype][0]
    acc, sto = np_acc(dtype), build.DTYPES[dtype][1]
    w, u, k, v, s0 = inputs
    B, T, C = k.shape
    NC = -(-T // 16)
    ar = Arena()
    W, U, S0 = (ar.input(x, acc) for x in (w, u, s0))
    K, V = (ar.input(to_storage(x, dtype)) for x in (k, v))
    y, s1, ck = ar.output((B, T, C), sto), ar.output((B, 3, C), acc), ar.output((B, NC, 3, C), acc)
    lib.call(f"wkv_forward_{sfx}", B, T, C, W, U, K, V, S0, eps, y, s1, ck, None)
    GY = None if gy is None else ar.input(to_storage(gy, dtype))
    GS1 = None if gs1 is None else ar.input(gs1, acc)
    gk, gv = ar.output((B, T, C), sto), ar.output((B, T, C), sto)
    gw, gu, gs0, part = ar.output((C,), acc), ar.output((C,), acc), ar.output((B, 3, C), acc), ar.output((2, B, C), acc)
    lib.call(f"wkv_backward_{sfx}", B, T, C, W, U, K, V, S0, s1, ck, eps, GY, GS1, gk, gv, gw, gu, gs0, part, None)
    ar.check()
    outs = [from_storage(y, dtype), s1.astype(np.float64), ck.astype(np.float64)]
    grads = [gw.astype(np.float64), gu.astype(np.float64), from_storage(gk, dtype), from_storage(gv, dtype),
             gs0.astype(np.float64)]
    return outs, grads


OUT_NAMES, GRAD_NAMES = ["y", "state", "checkpoints"], ["gw", "gu", "gk", "gv", "gstate"]


WKV_SHAPES = [
    (1, 1, 1),  # one token, one thread
    (2, 1, 5),
    (3, 17, 7),  # T = chunk + 1
    (2, 16, 16),  # T = chunk exactly
    (2, 33, 19),
    (1, 100, 37),
    (2, 47, 64),  # B * C = 128: exactly one block
    (3, 40, 129),  # B * C = 387: four blocks, the last partial
]


@pytest.mark.parametrize("B,T,C", WKV_SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_float32_matches_cpu_kernel(lib, B, T, C, with_state):
    seed = B * 1000 + T * 10 + C + with_state
    inputs, gy, gs1 = wkv_inputs(B, T, C, seed, "float32", with_state)
    for eps in (0.0, 1e-2):
        exp = wkv_cpu(inputs, eps, "float32", gy, gs1)
        got = wkv_emulated(lib, inputs, eps, "float32", gy, gs1)
        compare(got[0], exp[0], OUT_NAMES, TOL["float32"], f"eps={eps}")
        compare(got[1], exp[1], GRAD_NAMES, TOL["float32"], f"eps={eps}")


@pytest.mark.parametrize("which", ["y only", "state only"])
@pytest.mark.parametrize("B,T,C", [(2, 33, 19), (3, 40, 129)])
def test_missing_cotangent_is_a_null_pointer(lib, B, T, C, which):
    inputs, gy, gs1 = wkv_inputs(B, T, C, 17, "float32", with_state=True)
    gy, gs1 = (gy, None) if which == "y only" else (None, gs1)
    exp = wkv_cpu(inputs, 0.0, "float32", gy, gs1)
    got = wkv_emulated(lib, inputs, 0.0, "float32", gy, gs1)
    compare(got[1], exp[1], GRAD_NAMES, TOL["float32"], which)


def test_no_cotangent_at_all_gives_zero_gradients(lib):
    inputs, _, _ = wkv_inputs(2, 20, 9, 3, "float32", with_state=True)
    _, grads = wkv_emulated(lib, inputs, 0.0, "float32", None, None)
    for name, g in zip(GRAD_NAMES, grads):
        assert np.all(g == 0), name


@pytest.mark.parametrize("B,T,C", [(1, 1, 1), (3, 17, 7), (2, 33, 19), (3, 40, 129)])
def test_float64_matches_cpu_kernel(lib, B, T, C):
    inputs, gy, gs1 = wkv_inputs(B, T, C, 5 + T, "float64", with_state=True)
    for eps in (0.0, 1e-2):
        exp = wkv_cpu(inputs, eps, "float64", gy, gs1)
        got = wkv_emulated(lib, inputs, eps, "float64", gy, gs1)
        compare(got[0] + got[1], exp[0] + exp[1], OUT_NAMES + GRAD_NAMES, TOL["float64"], f"eps={eps}")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("B,T,C", [(1, 1, 1), (3, 17, 7), (2, 33, 19), (3, 40, 129)])
def test_half_matches_cpu_kernel_and_float32(lib, dtype, B, T, C):
    inputs, gy, gs1 = wkv_inputs(B, T, C, 11 + T, dtype, with_state=True)
    got = wkv_emulated(lib, inputs, 0.0, dtype, gy, gs1)
    exp = wkv_cpu(inputs, 0.0, dtype, gy, gs1)
    compare(got[0] + got[1], exp[0] + exp[1], OUT_NAMES + GRAD_NAMES, TOL[dtype], f"{dtype} vs CPU {dtype}")
    # The same (representable) values in float32: differs by the rounding of the stored outputs only.
    ref = wkv_cpu(inputs, 0.0, "float32", gy, gs1)
    loose = (3 * TOL[dtype][0], 3 * TOL[dtype][1])
    compare(got[0] + got[1], ref[0] + ref[1], OUT_NAMES + GRAD_NAMES, loose, f"{dtype} vs CPU float32")


@pytest.mark.parametrize(
    "case", ["extreme keys", "tiny decay", "large decay", "long sequence"],
)
def test_numerically_hard_inputs(lib, case):
    if case == "extreme keys":
        inputs, gy, gs1 = wkv_inputs(2, 40, 9, 3, "float32", k_scale=30.0)
        inputs[2][0, 3] = 60.0
        inputs[2][1, 5] = -60.0
        inputs[2][1, 6:9] = 88.0
    elif case == "tiny decay":
        inputs, gy, gs1 = wkv_inputs(2, 65, 11, 5, "float32", with_state=True, w_range=(1e-6, 1e-4))
    elif case == "large decay":
        inputs, gy, gs1 = wkv_inputs(2, 65, 11, 5, "float32", with_state=True, w_range=(20.0, 60.0))
    else:
        inputs, gy, gs1 = wkv_inputs(1, 300, 5, 7, "float32", w_range=(1e-3, 0.1))
    for eps in (0.0, 1e-16):
        exp = wkv_cpu(inputs, eps, "float32", gy, gs1)
        got = wkv_emulated(lib, inputs, eps, "float32", gy, gs1)
        compare(got[0] + got[1], exp[0] + exp[1], OUT_NAMES + GRAD_NAMES, (1e-4, 1e-5), f"{case}, eps={eps}")


def test_empty_batch_launches_nothing_and_sums_to_zero(lib):
    # The Paddle binding accepts B = 0 (it checks T > 0 and C > 0), and the CPU kernels return empty outputs and
    # zero weight gradients; a CUDA grid of 0 blocks would be a launch error.
    w, u = np.linspace(0.1, 1, 3), np.zeros(3)
    k = v = np.zeros((0, 5, 3))
    s0 = np.zeros((0, 3, 3))
    exp = wkv_cpu([w, u, k, v, s0], 0.0, "float32", k, s0)
    got = wkv_emulated(lib, [w, u, k, v, s0], 0.0, "float32", k, s0)
    for a, b in zip(got[0] + got[1], exp[0] + exp[1]):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


# ----- every schedule gives the same bits -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_serial_schedules_agree_bit_for_bit(lib, schedule, dtype):
    """No kernel may depend on the order in which threads and blocks run between barriers."""
    inputs, gy, gs1 = wkv_inputs(3, 40, 129, 99, dtype, with_state=True)
    outs_and_grads = lambda: sum(wkv_emulated(lib, inputs, 1e-2, dtype, gy, gs1), [])  # noqa: E731
    runs = under_schedules([lib], ["parallel", schedule], outs_and_grads)
    for a, b in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(a, b)
