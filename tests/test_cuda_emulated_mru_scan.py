"""The MRU scan's CUDA kernels (custom_ops/kernels/mru_scan.cuh), run on CPU threads under tests/cuda_emu's emulation
of CUDA, against the CPU kernel through the Paddle op (lrnn_mru_scan): prefixes, final state, and the gradients
w.r.t. m and the initial state with random cotangents on both outputs (a missing cotangent being a null pointer),
for d = 1 .. 32 (every frame size D = 4, 8, 16, 32 and the zero padding inside it), T = 1, odd T, T within one round
and T spanning several rounds of chunks, with and without an initial state, in float32, float64, float16 and
bfloat16. Outputs start as NaN poison inside guard zones (cuda_emu/build.py's Arena).

Both kernels synchronise every step (a barrier per step, shuffles per matrix product), so most cases run under the
serial `forward` schedule (fibers; tests/cuda_emu/README.md), and a few under `parallel`, `reverse` and `random`,
which must agree bit for bit."""
import numpy as np
import pytest
from cuda_emu import build
from cuda_emu.build import Arena, from_storage, round_to, to_storage
from cuda_emu.kernel_tests import HALF, acc_of, compare, f64, gradients, leaf, library_fixture, np_acc, under_schedules

from paddle_lrnn.ops.library import library

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

NAMES = ["prefix", "state", "gm", "gstate"]

lib = library_fixture("mru_scan", "forward")


def mru_inputs(B, H, T, d, seed, dtype, with_state=True, scale=0.3):
    """m = I + N(0, scale^2 / d) (products stay O(1)), an initial state (random, or the identity as the Python
    wrapper passes for "no state"), and cotangents, all float64 arrays representable in the kernels' dtypes."""
    rng = np.random.default_rng(seed)
    acc = acc_of(dtype)
    m = round_to(np.eye(d) + rng.normal(0, scale / np.sqrt(d), (B, H, T, d, d)), dtype)
    s0 = rng.normal(0, 1, (B, H, d, d)) if with_state else np.broadcast_to(np.eye(d), (B, H, d, d))
    s0 = round_to(s0, acc)
    gp = round_to(rng.normal(0, 1, (B, H, T, d, d)), dtype)
    gs1 = round_to(rng.normal(0, 1, (B, H, d, d)), acc)
    return m, s0, gp, gs1


def mru_cpu(m, s0, gp, gs1, dtype):
    """The CPU kernel through the Paddle op: [prefix, s1, gm, gs0], float64 numpy."""
    tm, ts0 = leaf(m, dtype), leaf(s0, acc_of(dtype))
    prefix, s1 = library().lrnn_mru_scan(tm, ts0)
    return [f64(prefix), f64(s1), *gradients([prefix, s1], [gp, gs1], [tm, ts0])]


def mru_emulated(lib, m, s0, gp, gs1, dtype):
    """The CUDA launchers under emulation; same returns as mru_cpu."""
    sfx, sto = build.DTYPES[dtype][0], build.DTYPES[dtype][1]
    acc = np_acc(dtype)
    B, H, T, d, _ = m.shape
    ar = Arena()
    M, S0 = ar.input(to_storage(m, dtype)), ar.input(s0, acc)
    prefix, s1 = ar.output(m.shape, sto), ar.output(s0.shape, acc)
    lib.call(f"mru_scan_forward_{sfx}", B * H, T, d, M, S0, prefix, s1, None)
    GP = None if gp is None else ar.input(to_storage(gp, dtype))
    GS1 = None if gs1 is None else ar.input(gs1, acc)
    gm, gs0 = ar.output(m.shape, sto), ar.output(s0.shape, acc)
    lib.call(f"mru_scan_backward_{sfx}", B * H, T, d, M, S0, prefix, GP, GS1, gm, gs0, None)
    ar.check()
    return [from_storage(prefix, dtype), s1.astype(np.float64), from_storage(gm, dtype), gs0.astype(np.float64)]


# Tolerances (rtol, atol relative to the largest expected magnitude) against the CPU kernel in the same dtype: both
# accumulate in float32 (float64) but associate the products differently (the CUDA scan multiplies chunk products
# and carries, the CPU kernel one step at a time); half outputs may round the other way, and the backward pass
# reads each side's own rounded prefixes.
TOL = {"float32": (5e-5, 5e-6), "float64": (1e-12, 1e-13), "float16": (4e-3, 2e-3), "bfloat16": (3e-2, 1.6e-2)}


def check(lib, m, s0, gp, gs1, dtype, what):
    """The emulated kernels against the CPU kernel in the same dtype."""
    compare(mru_emulated(lib, m, s0, gp, gs1, dtype), mru_cpu(m, s0, gp, gs1, dtype), NAMES, TOL[dtype], what)


def long_T(d, dtype="float32"):
    """A T spanning several rounds of both kernels, the last one partial (some warps past T, some chunks short).
    float32 frames D = 4, 8, 16: 8 warps of 16 steps (128 per round); D = 32: 5 warps forward, 3 backward."""
    return 100 if d > 16 else 300


D_VALUES = [1, 2, 3, 4, 5, 8, 16, 32]  # every frame size (4, 8, 16, 32), full and zero-padded


@pytest.mark.parametrize("d", D_VALUES)
@pytest.mark.parametrize("with_state", [False, True])
def test_float32_matches_cpu_kernel(lib, d, with_state):
    for B, H, T in [(2, 1, 1), (1, 2, 13), (1, 1, long_T(d))]:  # one step; odd, fewer steps than chunks; long
        m, s0, gp, gs1 = mru_inputs(B, H, T, d, 100 * d + T + with_state, "float32", with_state)
        check(lib, m, s0, gp, gs1, "float32", f"d={d} T={T}")


@pytest.mark.parametrize("T", [5, 128, 129])
def test_round_boundaries(lib, T):
    # T = 5 < 8 warps (one step per warp, three warps idle), exactly one full round, one step into the second.
    m, s0, gp, gs1 = mru_inputs(1, 1, T, 6, T, "float32")
    check(lib, m, s0, gp, gs1, "float32", f"T={T}")


@pytest.mark.parametrize("drop", ["gp", "gs1"])
@pytest.mark.parametrize("d", [3, 32])
def test_missing_cotangent_is_a_null_pointer(lib, d, drop):
    m, s0, gp, gs1 = mru_inputs(1, 2, 37, d, d, "float32")
    gp, gs1 = (None, gs1) if drop == "gp" else (gp, None)
    check(lib, m, s0, gp, gs1, "float32", drop)


def test_no_cotangent_at_all_gives_zero_gradients(lib):
    m, s0, _, _ = mru_inputs(1, 2, 37, 5, 1, "float32")
    got = mru_emulated(lib, m, s0, None, None, "float32")
    assert np.all(got[2] == 0) and np.all(got[3] == 0)


@pytest.mark.parametrize("d", [3, 8, 16, 32])
def test_float64_matches_cpu_kernel(lib, d):
    # float64 frames hold fewer warps (D = 32: 2 forward, 1 backward), so rounds are shorter.
    for B, H, T in [(1, 2, 1), (1, 1, 45 if d == 32 else 150)]:
        m, s0, gp, gs1 = mru_inputs(B, H, T, d, 7 * d + T, "float64")
        check(lib, m, s0, gp, gs1, "float64", f"d={d} T={T}")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("d", [2, 5, 16, 32])
def test_half_matches_cpu_kernel_and_float32(lib, dtype, d):
    for B, H, T in [(1, 2, 1), (1, 1, long_T(d))]:
        m, s0, gp, gs1 = mru_inputs(B, H, T, d, 13 * d + T, dtype, scale=0.1)
        got = mru_emulated(lib, m, s0, gp, gs1, dtype)
        compare(got, mru_cpu(m, s0, gp, gs1, dtype), NAMES, TOL[dtype], f"{dtype} d={d} T={T}")
        # The same representable values through the float32 CPU kernel: the prefixes differ by their rounding to
        # the storage dtype, and the backward pass of the half kernels reads those rounded prefixes.
        ref = mru_cpu(m, s0, gp, gs1, "float32")
        compare(got, ref, NAMES, (3 * TOL[dtype][0], 3 * TOL[dtype][1]), f"{dtype} vs CPU float32, d={d} T={T}")


def test_d_above_32_is_an_invalid_value(lib):
    m, s0, gp, gs1 = mru_inputs(1, 1, 2, 33, 0, "float32")
    with pytest.raises(build.EmulationError, match="CUDA error 1"):
        mru_emulated(lib, m, s0, gp, gs1, "float32")


# ----- every schedule gives the same bits -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("schedule", ["parallel", "reverse", "random"])
def test_schedules_agree_bit_for_bit(lib, schedule, dtype):
    """Every warp's staging buffers, chunk totals and the carry are shared memory guarded by barriers: the results
    must not depend on the order in which threads and blocks run between them. Two sequences (blocks), several
    rounds, D = 8 (shuffled row gathers) and D = 32 (one stage buffer: the extra barrier); shorter under
    `parallel` (OS threads)."""
    cases = [(5, 40 if schedule == "parallel" else 150), (32, 20 if schedule == "parallel" else 60)]
    for d, T in cases:
        m, s0, gp, gs1 = mru_inputs(2, 1, T, d, 99 + d, dtype)
        runs = under_schedules([lib], ["forward", schedule], lambda: mru_emulated(lib, m, s0, gp, gs1, dtype),
                               restore="forward")
        for name, a, b in zip(NAMES, *runs):
            np.testing.assert_array_equal(a, b, err_msg=f"d={d} T={T} {name}")
