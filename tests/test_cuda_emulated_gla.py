"""GLA's CUDA kernels (custom_ops/kernels/gla.cuh), run on CPU threads under tests/cuda_emu's emulation of CUDA,
against the CPU kernel through the Paddle op (lrnn_gla): outputs and gradients w.r.t. q, k, v, g and the initial
state with random cotangents on both outputs (a missing cotangent being a null pointer), on both algorithms: the
recurrent one (T <= 64, and every T in float64) and the chunked one (T > 64: 64-token chunks, 16-token sub-chunks,
32-wide tiles), with K and V off the tiles, gates from e^-20 to 1 - 1e-6 and a steep case, in float32, float64,
float16 and bfloat16. Outputs and the workspace start as NaN poison inside guard zones (cuda_emu/build.py's Arena).

The kernels synchronise a lot (a 17-shuffle butterfly per token in the recurrent backward, barriers per tile in the
chunked kernels), so most cases run under the serial `forward` schedule (fibers, about ten times faster than OS
threads; tests/cuda_emu/README.md), and a few under `parallel`, `reverse` and `random`, which must agree bit for
bit."""
import numpy as np
import pytest
from cuda_emu import build
from cuda_emu.build import Arena, from_storage, round_to, to_storage
from cuda_emu.kernel_tests import HALF, acc_of, compare, f64, gradients, leaf, library_fixture, np_acc, under_schedules
from helpers import assert_close_dg, log_gates

from paddle_lrnn.ops.library import double_attr, library

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

OUT_NAMES = ["o", "state"]
GRAD_NAMES = ["gq", "gk", "gv", "gg", "gstate"]

lib = library_fixture("gla", "forward")


def gla_inputs(B, T, H, K, V, seed, dtype, with_state=True, g_range=(-20.0, -1e-6)):
    """Inputs (q, k, v, g, s0) and cotangents (go, gs1) as float64 arrays exactly representable in the dtypes the
    kernels read them in (storage dtype for q, k, v, g, go; accumulator dtype for the states)."""
    rng = np.random.default_rng(seed)
    acc = acc_of(dtype)
    q, k = (round_to(rng.normal(0, 1, (B, T, H, K)), dtype) for _ in range(2))
    v = round_to(rng.normal(0, 1, (B, T, H, V)), dtype)
    g = round_to(log_gates(rng, (B, T, H, K), *g_range), dtype)
    g = np.minimum(g, 0.0)  # rounding keeps g <= 0 anyway; the kernels' precondition
    s0 = round_to(rng.normal(0, 1, (B, H, K, V)), acc) if with_state else np.zeros((B, H, K, V))
    go = round_to(rng.normal(0, 1, (B, T, H, V)), dtype)
    gs1 = round_to(rng.normal(0, 1, (B, H, K, V)), acc)
    return [q, k, v, g, s0], go, gs1


def split_scale(K, scale=None):
    """The scale as the Python wrapper sends it (two float32 attributes) and the value the kernels see."""
    hi, lo = double_attr(K ** -0.5 if scale is None else scale)
    return hi, lo, hi + lo


def gla_cpu(inputs, dtype, go, gs1, scale=None):
    """The CPU kernel through the Paddle op: [o, s1] and [gq, gk, gv, gg, gs0], float64 numpy."""
    acc = acc_of(dtype)
    q, k, v, g, s0 = (leaf(x, d) for x, d in zip(inputs, [dtype] * 4 + [acc]))
    hi, lo, _ = split_scale(inputs[0].shape[3], scale)
    o, s1 = library().lrnn_gla(q, k, v, g, s0, hi, lo)
    return [f64(o), f64(s1)], gradients([o, s1], [go, gs1], [q, k, v, g, s0])


def gla_emulated(lib, inputs, dtype, go, gs1, scale=None, expect_chunked=None):
    """The CUDA launchers under emulation; same returns as gla_cpu."""
    sfx, sto = build.DTYPES[dtype][0], build.DTYPES[dtype][1]
    acc = np_acc(dtype)
    q, k, v, g, s0 = inputs
    B, T, H, K = q.shape
    V = v.shape[3]
    _, _, sc = split_scale(K, scale)
    if dtype != "float64":
        sc = float(np.float32(sc))  # static_cast<float> of the binding's double
    ws = np.zeros(3, np.int64)
    lib.call(f"gla_workspace_{sfx}", B, T, H, K, V, ws)
    if expect_chunked is not None:
        assert bool(ws[2]) == expect_chunked, f"T={T} {dtype}: expected the {'chunked' if expect_chunked else 'recurrent'} path"
    ar = Arena()
    Q, Kk, Vv, G = (ar.input(to_storage(x, dtype)) for x in (q, k, v, g))
    S0 = ar.input(s0, acc)
    o, s1 = ar.output((B, T, H, V), sto), ar.output((B, H, K, V), acc)
    work = ar.output((max(int(ws[0]), 1),), acc)
    lib.call(f"gla_forward_{sfx}", B, T, H, K, V, Q, Kk, Vv, G, S0, sc, o, s1, work, None)
    GO = None if go is None else ar.input(to_storage(go, dtype))
    GS1 = None if gs1 is None else ar.input(gs1, acc)
    gq, gk, gg = (ar.output((B, T, H, K), sto) for _ in range(3))
    gv, gs0 = ar.output((B, T, H, V), sto), ar.output((B, H, K, V), acc)
    work = ar.output((max(int(ws[1]), 1),), acc)
    lib.call(f"gla_backward_{sfx}", B, T, H, K, V, Q, Kk, Vv, G, S0, s1, sc, GO, GS1, gq, gk, gv, gg, gs0, work,
             None)
    ar.check()
    outs = [from_storage(o, dtype), s1.astype(np.float64)]
    grads = [from_storage(x, dtype) for x in (gq, gk, gv, gg)] + [gs0.astype(np.float64)]
    return outs, grads


def compare_gla(got, exp, inputs, tol, what):
    """Outputs and gradients within (rtol, atol relative to the largest expected magnitude); dg's absolute error is
    measured against the terms of the running sum it comes from (q * dq, k * dk), which cancel where dg is small."""
    (got_outs, got_grads), (exp_outs, exp_grads) = got, exp
    compare(got_outs, exp_outs, OUT_NAMES, tol, what)
    compare(got_grads[:3] + got_grads[4:], exp_grads[:3] + exp_grads[4:], GRAD_NAMES[:3] + GRAD_NAMES[4:], tol, what)
    assert_close_dg(got_grads[3], exp_grads[3], inputs[0], inputs[1], exp_grads[0], exp_grads[1], *tol, what)


# Tolerances (rtol, atol relative to the largest expected magnitude) against the CPU kernel in the same dtype.
# Recurrent: the same recurrence, summed over K and V in another order (warps, tiles, a butterfly). Chunked: the
# chunk form computes exp(G_i - G_j) from fp32 gate cumsums G of up to 64 tokens (|G| up to about 100 with these
# gates), whose rounding (|G| * 6e-8) moves the exponents by about 1e-5: relative errors of a few 1e-6 of the
# largest output. Half: both round the same float32 values to the storage dtype; one rounding apart at most.
TOL = {
    "recurrent": {"float32": (2e-5, 2e-6), "float64": (1e-12, 1e-13), "float16": (2e-3, 1e-3),
                  "bfloat16": (1.6e-2, 8e-3)},
    "chunked": {"float32": (1e-4, 2e-5), "float16": (2e-3, 1e-3), "bfloat16": (1.6e-2, 8e-3)},
}

RECURRENT_SHAPES = [  # (B, T, H, K, V)
    (1, 1, 1, 1, 1),  # one token, one row, one column
    (2, 1, 3, 8, 5),
    (2, 17, 2, 8, 8),  # one past the 16 tokens staged per step (8 for float64)
    (1, 40, 2, 64, 32),  # exactly one (64-row K, 32-column V) tile
    (1, 64, 1, 70, 40),  # T = the recurrent limit; two K tiles and two V tiles, both partial
]
CHUNKED_SHAPES = [
    (1, 65, 1, 8, 8),  # one past the recurrent limit: a full chunk and a 1-token chunk
    (1, 128, 1, 32, 32),  # whole chunks, whole tiles
    (2, 130, 2, 40, 72),  # K, V off the 32-wide tiles; a 2-token last chunk
    (1, 200, 1, 33, 33),  # T not a multiple of 64 (3 chunks + 8 tokens), a 1-wide last tile
]


def path_of(T, dtype):
    return "chunked" if dtype != "float64" and T > 64 else "recurrent"


def check_case(lib, shape, dtype, seed, with_state=True, g_range=(-20.0, -1e-6), drop=(), tol=None):
    inputs, go, gs1 = gla_inputs(*shape, seed, dtype, with_state, g_range)
    go = None if "go" in drop else go
    gs1 = None if "gs1" in drop else gs1
    path = path_of(shape[1], dtype)
    got = gla_emulated(lib, inputs, dtype, go, gs1, expect_chunked=path == "chunked")
    exp = gla_cpu(inputs, dtype, go, gs1)
    compare_gla(got, exp, inputs, tol or TOL[path][dtype], f"{path} {dtype} {shape}")
    return inputs, go, gs1, got


@pytest.mark.parametrize("shape", RECURRENT_SHAPES + CHUNKED_SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_float32_matches_cpu_kernel(lib, shape, with_state):
    check_case(lib, shape, "float32", sum(shape) + with_state, with_state)


@pytest.mark.parametrize("drop", [("go",), ("gs1",)])
@pytest.mark.parametrize("shape", [(2, 20, 2, 9, 7), (1, 100, 2, 9, 7)])
def test_missing_cotangent_is_a_null_pointer(lib, shape, drop):
    check_case(lib, shape, "float32", 3, drop=drop)


@pytest.mark.parametrize("T", [20, 100])
def test_no_cotangent_at_all_gives_zero_gradients(lib, T):
    inputs, _, _ = gla_inputs(1, T, 2, 9, 7, 4, "float32")
    _, grads = gla_emulated(lib, inputs, "float32", None, None)
    for name, g in zip(GRAD_NAMES, grads):
        assert np.all(g == 0), name


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 9, 2, 8, 5), (1, 64, 1, 70, 40), (1, 100, 1, 33, 40)])
def test_float64_matches_cpu_kernel(lib, shape):
    # float64 always runs the recurrent kernels (8 tokens staged per step), T > 64 included.
    check_case(lib, shape, "float64", 5 + shape[1])


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("shape", [(2, 17, 2, 8, 8), (1, 64, 1, 70, 40), (2, 130, 2, 40, 72), (1, 200, 1, 33, 33)])
def test_half_matches_cpu_kernel_and_float32(lib, dtype, shape):
    inputs, go, gs1, got = check_case(lib, shape, dtype, 11 + shape[1])
    # The same representable values through the float32 CPU kernel: apart by the rounding of the stored outputs.
    ref = gla_cpu(inputs, "float32", go, gs1)
    tol = TOL[path_of(shape[1], dtype)][dtype]
    compare_gla(got, ref, inputs, (3 * tol[0], 3 * tol[1]), f"{dtype} vs CPU float32")


@pytest.mark.parametrize(
    "g_range", [(-1e-5, -1e-6), (-20.0, -15.0), (-100.0, -60.0), (-1e-6, -1e-6)],
    ids=["near one", "near zero", "steep", "constant"],
)
@pytest.mark.parametrize("T", [40, 150])
def test_gates_near_one_near_zero_and_steep(lib, g_range, T):
    # Near one: a running sum over the whole sequence; near zero: almost only the last token; steep: exp(g) and the
    # chunk factors underflow (exp(-60) * exp(-60) < 1e-38), which must give zeros, never inf or NaN.
    check_case(lib, (1, T, 2, 9, 40), "float32", 6, g_range=g_range)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_steep_gates_mixed_with_slow_ones(lib, dtype):
    # Per channel, gates alternating between steep (-80) and slow (-1e-4) along time: cumsums that fall by thousands
    # inside a chunk next to channels that hardly move, across sub-chunk boundaries. The chunked form's fp32 cumsum
    # then reaches -2900, where a float32 ulp (2.4e-4) exceeds the slow gate: its exponents are off by ~1e-4 per
    # slow step. A float64 model of the chunk form from the same fp32 cumsums has the same 2e-3 error (of o, max
    # |o| ~ 3) as the kernel; fla's chunk_gla shares it (chunk-local fp32 cumsums). Hence the wider tolerance.
    inputs, go, gs1 = gla_inputs(1, 150, 1, 12, 9, 8, dtype)
    g = inputs[3]
    t = np.arange(g.shape[1])[None, :, None, None]
    c = np.arange(g.shape[3])[None, None, None, :]
    inputs[3] = round_to(np.where((t // (c + 1)) % 2 == 0, -80.0, -1e-4) * np.ones_like(g), dtype)
    got = gla_emulated(lib, inputs, dtype, go, gs1, expect_chunked=True)
    exp = gla_cpu(inputs, dtype, go, gs1)
    tol = {"float32": (1e-3, 1e-3), "bfloat16": (1.6e-2, 8e-3)}[dtype]
    compare_gla(got, exp, inputs, tol, f"steep/slow {dtype}")


# ----- every schedule gives the same bits -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("schedule", ["parallel", "reverse", "random"])
def test_schedules_agree_bit_for_bit(lib, schedule, dtype):
    """No kernel may depend on the order in which threads and blocks run between barriers: both algorithms (float64
    only has the recurrent one) under `forward` and under `schedule`. Several tiles per launch for the serial
    schedules (blocks run in their order too); one tile per launch under `parallel` (OS threads: about 0.25 ms per
    shuffle, and the recurrent backward shuffles 17 times per token)."""
    if schedule == "parallel":
        shapes = [(1, 17, 1, 9, 7), (1, 80, 1, 40, 40)]
    else:
        shapes = [(2, 20, 1, 70, 40), (1, 130, 2, 40, 40)]
    if dtype == "float64":
        shapes = shapes[:1]
    for shape in shapes:
        inputs, go, gs1 = gla_inputs(*shape, 99, dtype)
        runs = under_schedules([lib], ["forward", schedule], lambda: sum(gla_emulated(lib, inputs, dtype, go, gs1), []),
                               restore="forward")
        for name, a, b in zip(OUT_NAMES + GRAD_NAMES, *runs):
            np.testing.assert_array_equal(a, b, err_msg=f"{shape} {name}")
