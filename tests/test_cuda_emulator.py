"""The CPU emulation of CUDA itself (tests/cuda_emu): built-in indices, shuffle and vote semantics (checked against
CUDA's documented rules, written out independently here), barriers, the errors it must report (deadlock, divergent
barrier, bad masks, bad launch configurations), races and cross-block dependencies made visible by the serial
schedules, dynamic shared memory, atomics, and the half/bfloat16 conversions bit for bit."""
import numpy as np
import paddle
import pytest
from cuda_emu import build
from cuda_emu.build import Arena, EmulationError

pytestmark = pytest.mark.slow  # left out of the fast core, pytest -m "not slow" (README, Development)

SCHEDULES = ["parallel", "forward", "reverse", "random"]


@pytest.fixture(scope="module")
def lib():
    lib = build.load("selftest")
    yield lib
    lib.set_schedule()


@pytest.fixture(params=SCHEDULES)
def scheduled(request, lib):
    lib.set_schedule(request.param, seed=3)
    yield lib
    lib.set_schedule()


def test_builtin_indices(scheduled):
    grid, block = (2, 3, 2), (4, 3, 2)
    n = np.prod(grid) * np.prod(block)
    ar = Arena()
    out = ar.output((n, 8), np.int32)
    scheduled.call("selftest_index", *grid, *block, out)
    ar.check()
    rows = []
    for bz in range(2):
        for by in range(3):
            for bx in range(2):
                for tz in range(2):
                    for ty in range(3):
                        for tx in range(4):
                            rows.append([tx, ty, tz, bx, by, bz, 24, 12])
    np.testing.assert_array_equal(out, np.array(rows))


def expected_shuffle(lane, mode, b, width, exists):
    """The value 1000 + global thread id that lane `lane` of a warp reads, per CUDA's documentation; -1 where the
    source lane takes no part (the emulation's poison)."""
    seg = lane // width * width
    if mode == 0:  # __shfl_sync: srcLane modulo width, inside the lane's segment
        src = seg + b % width
    elif mode == 1:  # up: lanes less than delta into their segment keep their own value
        src = lane - b if lane - seg >= b else lane
    elif mode == 2:  # down: lanes whose source falls past their segment keep their own value
        src = lane + b if lane - seg + b < width else lane
    else:  # xor: earlier segments may be read, later ones give the own value
        src = lane ^ b
        src = src if src < seg + width else lane
    return src if src == lane or exists(src) else None


@pytest.mark.parametrize("threads", [64, 80])  # 80: the last warp has 16 lanes
def test_shuffles_follow_cuda_semantics(scheduled, threads):
    deltas = np.array([0, 1, 3, 16, 31], np.int32)
    widths = [1, 2, 4, 8, 16, 32]
    ar = Arena()
    out = ar.output((4, 6, len(deltas), threads), np.int32)
    outd = ar.output((threads,), np.float64)
    scheduled.call("selftest_shuffle", threads, len(deltas), ar.input(deltas), out, outd)
    ar.check()
    for t in range(threads):
        warp, lane = divmod(t, 32)
        exists = lambda src: 32 * warp + src < threads  # noqa: E731
        for m in range(4):
            for wi, width in enumerate(widths):
                for di, b in enumerate(deltas):
                    src = expected_shuffle(lane, m, int(b), width, exists)
                    want = -1 if src is None else 1000 + 32 * warp + src
                    assert out[m, wi, di, t] == want, (t, ["idx", "up", "down", "xor"][m], width, b)
    want_d = np.array([(t ^ 1) + 0.25 for t in range(threads)])
    np.testing.assert_array_equal(outd, want_d)


def test_disjoint_masks_shuffle_at_once(scheduled):
    ar = Arena()
    out = ar.output((64,), np.int32)
    scheduled.call("selftest_half_warp", 64, out)
    np.testing.assert_array_equal(out, 1000 + (np.arange(64) ^ 1))


def test_votes_and_counting_barriers(scheduled):
    n = 40  # one full warp and one of 8 lanes
    ar = Arena()
    out = ar.output((n, 8), np.int32)
    scheduled.call("selftest_vote", n, out)
    t = np.arange(n)
    for i in range(n):
        lanes = t[(t // 32) == (i // 32)]
        ballot = sum(1 << (int(x) % 32) for x in lanes if x % 3 == 0)
        assert out[i, 0] == np.uint32(ballot).view(np.int32), i
        assert out[i, 1] == int(5 in lanes), i
        assert out[i, 2] == int(all(lanes < 36)), i
        assert out[i, 3] == lanes.sum(), i
    np.testing.assert_array_equal(out[:, 4], 20)
    np.testing.assert_array_equal(out[:, 5], 1)
    np.testing.assert_array_equal(out[:, 6], 1)
    np.testing.assert_array_equal(out[:, 7], t.sum())


def test_threads_that_return_early_leave_the_barrier(scheduled):
    ar = Arena()
    out = ar.output((64,), np.int32)
    scheduled.call("selftest_early_exit", 64, 40, out)
    np.testing.assert_array_equal(out[:40], 7 * (39 - np.arange(40)))
    np.testing.assert_array_equal(out[40:], -1)  # never written: still the poison


def test_serial_schedules_expose_a_missing_barrier(lib):
    blocks, threads = 2, 64
    want = lambda seed: seed * 10000 + (np.arange(threads) + 1) % threads  # noqa: E731
    results = {}
    try:
        for seed, schedule in enumerate(SCHEDULES, start=1):
            lib.set_schedule(schedule, seed=seed)
            out = np.zeros((blocks, threads), np.int32)
            lib.call("selftest_neighbour", blocks, threads, seed, 1, out)
            np.testing.assert_array_equal(out, np.stack([want(seed)] * blocks), err_msg=schedule)
            lib.call("selftest_neighbour", blocks, threads, seed + 10, 0, out)
            results[schedule] = out.copy()
    finally:
        lib.set_schedule()
    # Without the barrier, thread order decides what is read: both serial orders get stale values somewhere.
    for schedule in ["forward", "reverse"]:
        assert np.any(results[schedule] != np.stack([want(SCHEDULES.index(schedule) + 11)] * blocks)), schedule


def test_serial_schedules_expose_a_dependency_between_blocks(lib):
    results = {}
    try:
        for schedule in ["forward", "reverse"]:
            lib.set_schedule(schedule)
            data = np.zeros(9, np.int32)
            lib.call("selftest_chain", 8, data)
            results[schedule] = data
    finally:
        lib.set_schedule()
    np.testing.assert_array_equal(results["forward"], np.arange(9))
    assert not np.array_equal(results["reverse"], np.arange(9))


@pytest.mark.parametrize(
    "kind,message",
    [(0, "deadlock"), (1, "divergent barrier"), (2, "does not name it"), (3, "overlapping|deadlock"), (4, "width")],
)
def test_errors_are_reported(scheduled, kind, message):
    out = np.zeros(32, np.int32)
    with pytest.raises(EmulationError, match=message):
        scheduled.call("selftest_error", kind, 32, out)
    # The next launch starts clean.
    good = np.zeros(32, np.int32)
    scheduled.call("selftest_early_exit", 32, 32, good)
    np.testing.assert_array_equal(good, 7 * (31 - np.arange(32)))


@pytest.mark.parametrize(
    "grid,block",
    [((1, 1, 1), (2048, 1, 1)), ((1, 1, 1), (32, 32, 2)), ((1, 1, 1), (1, 1, 65)), ((1, 70000, 1), (32, 1, 1)),
     ((0, 1, 1), (32, 1, 1))],
)
def test_invalid_launch_configurations(lib, grid, block):
    with pytest.raises(EmulationError, match="invalid launch configuration"):
        lib.call("selftest_config", *grid, *block)


def test_valid_launch_configuration_limits(lib):
    lib.call("selftest_config", 1, 1, 1, 1024, 1, 1)
    lib.call("selftest_config", 1, 1, 1, 1, 1, 64)
    lib.call("selftest_config", 1, 2, 65535, 1, 1, 1)  # 131070 one-thread blocks


def test_dynamic_shared_memory_is_poisoned_and_limited(lib):
    ar = Arena()
    before, after = ar.output((128,), np.float32), ar.output((128,), np.float32)
    lib.call("selftest_dynamic_smem", 128, 512, 0, before, after)
    assert np.all(np.isnan(before))
    np.testing.assert_array_equal(after, np.arange(128)[::-1])
    with pytest.raises(EmulationError, match="exceed the kernel's limit"):
        lib.call("selftest_dynamic_smem", 128, 64 * 1024, 0, before, after)
    lib.call("selftest_dynamic_smem", 128, 64 * 1024, 1, before, after)  # after cudaFuncSetAttribute
    with pytest.raises(EmulationError):
        lib.call("selftest_dynamic_smem", 128, 300 * 1024, 1, before, after)  # past what any GPU allows


def test_atomics(scheduled):
    fsum, dsum = np.zeros(1, np.float32), np.zeros(1, np.float64)
    count, mx = np.zeros(1, np.int32), np.full(1, -5, np.int32)
    bits, hsum = np.zeros(1, np.uint64), np.zeros(1, np.uint16)
    scheduled.call("selftest_atomic", 4, 256, fsum, dsum, count, mx, bits, hsum)
    assert fsum[0] == 512 and dsum[0] == 256 and count[0] == 1024 and mx[0] == 1023
    assert bits[0] == np.uint64(2**64 - 1)
    assert hsum.view(np.float16)[0] == 1024


def test_arena_catches_an_out_of_bounds_write(lib):
    ar = Arena()
    out = ar.output((32,), np.float32)
    lib.call("selftest_oob", 32, out)
    with pytest.raises(AssertionError, match="guard zone"):
        ar.check()


# ----- half and bfloat16 conversions ---------------------------------------------------------------------------------
def convert(lib, name, x, out_dtype):
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, out_dtype)
    fn = lib.raw(name)
    fn.restype = None
    fn(x.ctypes.data_as(np.ctypeslib.ctypes.c_void_p), y.ctypes.data_as(np.ctypeslib.ctypes.c_void_p),
       np.ctypeslib.ctypes.c_int64(x.size))
    return y


def interesting_floats(rng):
    """Random bit patterns (all exponents, NaNs, infinities), every half midpoint and its float32 neighbours, and
    the edges of the half range."""
    rand = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mids = ((halves[:-1] + halves[1:]) / 2).astype(np.float32)  # exact in float32
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(0))])
    edges = np.array([0.0, -0.0, 65504, 65519.996, 65520, 65536, 1e9, np.inf, -np.inf, 2**-25, 3 * 2**-25, 2**-24,
                      2**-14, 2**-14 - 2**-25, 1e-30], np.float32)
    x = np.concatenate([rand, mids, near, edges]).astype(np.float32)
    return np.concatenate([x, -x])


def test_float_to_half_is_round_to_nearest_even(lib):
    x = interesting_floats(np.random.default_rng(0))
    got = convert(lib, "lrnn_emu_float_to_half", x, np.uint16)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)  # numpy rounds to nearest even
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.all(got[nan] == 0x7FFF)  # CUDA's canonical NaN


def test_half_to_float_is_exact_for_every_pattern(lib):
    bits = np.arange(65536, dtype=np.uint64).astype(np.uint16)
    got = convert(lib, "lrnn_emu_half_to_float", bits, np.float32)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.all(np.isnan(got[nan]))


def test_double_to_half_rounds_once(lib):
    rng = np.random.default_rng(1)
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mids = (halves[:-1] + halves[1:]) / 2
    x = np.concatenate([mids, mids * (1 + 2.0**-40), mids * (1 - 2.0**-40), rng.normal(0, 100, 10000),
                        rng.normal(0, 1e-5, 10000)])  # just off a midpoint: rounding through float would tie
    x = np.concatenate([x, -x])
    got = convert(lib, "lrnn_emu_double_to_half", x, np.uint16)
    np.testing.assert_array_equal(got, x.astype(np.float16).view(np.uint16))


def reference_bfloat16(x):
    """Nearest bfloat16 by comparing the two candidates in float64 (ties to the even one): independent of the bit
    trick the emulation uses. Finite x only; past the largest bfloat16 the upper candidate is 2^128 (infinity)."""
    bits = x.view(np.uint32)
    lo = bits & np.uint32(0xFFFF0000)
    vlo = lo.view(np.float32).astype(np.float64)
    exponent = ((bits >> 23) & 0xFF).astype(np.int64)
    ulp = np.ldexp(1.0, np.maximum(exponent, 1) - 127 - 7)
    vhi = vlo + np.sign(x) * ulp
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore"):  # infinities: inf - inf; they keep lo, themselves
        dlo, dhi = np.abs(xd - vlo), np.abs(vhi - xd)
    even_lo = ((lo >> 16) & 1) == 0
    pick_hi = (dhi < dlo) | ((dhi == dlo) & ~even_lo)
    return np.where(pick_hi, (lo >> 16) + 1, lo >> 16).astype(np.uint16)


def test_float_to_bfloat16_is_round_to_nearest_even(lib):
    rng = np.random.default_rng(2)
    rand = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**16, 50_000, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000  # exact midpoints
    bits = np.concatenate([rand, ties, ties + 1, ties - 1, np.array([0x7F7FFFFF, 0x7F7F8000, 0xFF7F8000, 0x7F800000,
                                                                    0x00000001, 0x00008000, 0x00018000], np.uint32)])
    x = bits.view(np.float32)
    got = convert(lib, "lrnn_emu_float_to_bfloat16", x, np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], reference_bfloat16(x[~nan]))
    assert np.all(got[nan] == 0x7FFF)
    # Paddle's CPU cast agrees too.
    finite = x[np.isfinite(x)][:20000]
    paddle_bits = paddle.to_tensor(finite).astype("bfloat16").numpy()
    np.testing.assert_array_equal(convert(lib, "lrnn_emu_float_to_bfloat16", finite, np.uint16), paddle_bits)


def test_bfloat16_to_float_is_exact_for_every_pattern(lib):
    bits = np.arange(65536, dtype=np.uint64).astype(np.uint16)
    got = convert(lib, "lrnn_emu_bfloat16_to_float", bits, np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), bits.astype(np.uint32) << 16)
