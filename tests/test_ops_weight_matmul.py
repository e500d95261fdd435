"""ops.weight_matmul and ops.quantize_int8: bfloat16, float16 and int8 weights against the exact (float64) product
and the pure-Paddle reference, for K and N that are no multiple of any vector width, 1 to 17 rows, K = 8192, tiles
along K and N, leading batch dimensions, weights stored [K, N] and transposed ([N, K], an embedding that is the
head, int8 scales per row), at every instruction-set level this processor has (capped in process);
rows that do not depend on the other rows; the quantiser equal to its reference bit for bit; inference only.
(The thread-count independence is in test_determinism.py.)

Tolerances come from float32 rounding, not from one machine: a float32 sum of K products, in any order, with or
without fused multiply-adds, is within gamma_K = K u / (1 - K u) of sum_k |x_k w_k| from the exact sum (u = 2^-24,
the unit roundoff; Higham, Accuracy and Stability of Numerical Algorithms, sec. 3.1), and int8's scale adds one
rounding. Where every product and partial sum is an integer below 2^24 no rounding happens at all, whatever the
order, so those results must be exact on any machine and at any level."""
import numpy as np
import paddle
import pytest

from paddle_lrnn import ops
from paddle_lrnn.ops import library, reference

U = 2.0 ** -24
DTYPES = ["bfloat16", "float16", "int8"]


@pytest.fixture(params=library.ISA_LEVELS)
def isa(request):
    """Runs the test with the kernels capped at each level (a level this processor lacks is skipped)."""
    order = library.ISA_LEVELS
    if order.index(request.param) > order.index(library.cpu_isa_supported()):
        pytest.skip(f"this processor has no {request.param}")
    before = library.cpu_isa()
    assert library.set_cpu_isa_cap(request.param) == request.param
    yield request.param
    library.set_cpu_isa_cap(before)


def weights(rng, K, N, dtype, scale=0.05):
    """(weight, scale or None) as a model would hold them, and dequant(weight) in float64."""
    w = paddle.to_tensor((rng.standard_normal((K, N)) * scale).astype(np.float32))
    if dtype == "int8":
        q, s = ops.quantize_int8(w)
        return q, s, q.numpy().astype(np.float64) * s.numpy().astype(np.float64)
    w = w.astype(dtype)
    return w, None, w.astype("float32").numpy().astype(np.float64)


def assert_within_rounding(got, x, w64, scale, name):
    """|got - x @ w| <= ((K + 1) u + 2^-24 relative slack) sum |x||w| elementwise (see the module docstring)."""
    x64 = x.numpy().astype(np.float64).reshape(-1, w64.shape[0])
    exact = x64 @ w64
    magnitude = np.abs(x64) @ np.abs(w64)
    K = w64.shape[0]
    bound = (K + 1) * U / (1 - (K + 1) * U) * magnitude + np.finfo(np.float32).tiny
    err = np.abs(got.reshape(exact.shape).astype(np.float64) - exact)
    assert (err <= bound).all(), f"{name}: error {err.max():.3g} beyond {bound[err > bound].min():.3g}"


def oriented(w, transpose):
    """The weight as weight_matmul takes it: [K, N], or [N, K] for transpose_weight (the same scales, now per row)."""
    return w.t().contiguous() if transpose else w


SHAPES = [  # (rows, K, N): tails of every vector width, one tile and several along K and N, the 16-row pass
    (1, 1, 1), (1, 7, 13), (2, 37, 50), (3, 129, 33), (5, 300, 1030), (16, 257, 1025), (17, 1000, 19), (1, 8192, 67),
]


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, K, N", SHAPES)
def test_matches_the_exact_product_and_the_reference(isa, dtype, rows, K, N, transpose):
    rng = np.random.default_rng(rows * 1000 + K + N)
    w, scale, w64 = weights(rng, K, N, dtype)
    w = oriented(w, transpose)
    x = paddle.to_tensor(rng.standard_normal((rows, K)).astype(np.float32))
    got = ops.weight_matmul(x, w, scale, transpose_weight=transpose)
    assert got.dtype == paddle.float32 and got.shape == [rows, N]
    assert_within_rounding(got.numpy(), x, w64, scale, f"{isa} {dtype}")
    want = reference.weight_matmul(x, w, scale, transpose_weight=transpose).numpy()  # (within rounding too)
    assert_within_rounding(want, x, w64, scale, "reference")


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_products_are_exact_at_every_level(isa, dtype, transpose):
    """Integers: x in [-8, 8], weights in [-16, 16] (exact in bfloat16 and float16) or int8 in [-127, 127] with a
    power-of-two scale; every partial sum of K = 8192 such products is an integer below 2^24, so nothing rounds."""
    rng = np.random.default_rng(3)
    rows, K, N = 3, 8192, 45
    x = rng.integers(-8, 9, (rows, K)).astype(np.float32)
    if dtype == "int8":
        q = rng.integers(-127, 128, (K, N)).astype(np.int8)
        s = (2.0 ** -7 * (1 + np.arange(N) % 3)).astype(np.float32)  # 2^-7, 2^-6, 3 * 2^-7: exact products
        w, scale, want = paddle.to_tensor(q), paddle.to_tensor(s), (x.astype(np.int64) @ q.astype(np.int64)) * s
    else:
        wi = rng.integers(-16, 17, (K, N))
        w, scale = paddle.to_tensor(wi.astype(np.float32)).astype(dtype), None
        want = x.astype(np.int64) @ wi
    got = ops.weight_matmul(paddle.to_tensor(x), oriented(w, transpose), scale, transpose_weight=transpose)
    np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_do_not_depend_on_the_other_rows(isa, dtype, transpose):
    """The same row alone, among 17 others, or inside leading batch dimensions: the same bits (the tiles depend on K
    and N only), so batched decoding gives each sequence what it would get alone."""
    rng = np.random.default_rng(5)
    K, N = 700, 1300
    w, scale, _ = weights(rng, K, N, dtype)
    w = oriented(w, transpose)
    x = paddle.to_tensor(rng.standard_normal((2, 9, K)).astype(np.float32))

    def product(x):
        return ops.weight_matmul(x, w, scale, transpose_weight=transpose)

    batched = product(x)
    assert batched.shape == [2, 9, N]
    flat = product(x.reshape([18, K])).numpy()
    np.testing.assert_array_equal(batched.numpy().reshape(18, N), flat)
    for i in (0, 7, 16, 17):
        np.testing.assert_array_equal(product(x.reshape([18, K])[i]).numpy(), flat[i])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_quantize_int8_equals_its_reference_bit_for_bit(dtype):
    """Divisions and roundings only (no sums): the kernel and paddle give the same bits on any machine. The weights
    include exact halves (ties round to even), a column of zeros and a column with a single non-zero."""
    rng = np.random.default_rng(7)
    K, N = 300, 70
    w = rng.standard_normal((K, N)).astype(np.float32)
    w[0, 0] = 127.0  # max |w| = 127: scale 1, q = round(w) ...
    w[1:, 0] = np.arange(K - 1) % 252 - 125.5  # ... of exact halves from -125.5 to 125.5 (8 significant bits)
    w[:, 1] = 0.0
    w[:, 2] = 0.0
    w[5, 2] = -3.0
    t = paddle.to_tensor(w).astype(dtype)
    q, scale = ops.quantize_int8(t)
    q_ref, scale_ref = reference.quantize_int8(t)
    assert q.dtype == paddle.int8 and scale.dtype == paddle.float32 and q.shape == [K, N] and scale.shape == [N]
    np.testing.assert_array_equal(q.numpy(), q_ref.numpy())
    np.testing.assert_array_equal(scale.numpy(), scale_ref.numpy())
    np.testing.assert_array_equal(q.numpy()[1:, 0], np.rint(w[1:, 0]))  # halves to the even neighbour
    assert scale.numpy()[1] == 0 and not q.numpy()[:, 1].any()
    assert q.numpy()[5, 2] == -127 and not np.delete(q.numpy()[:, 2], 5).any()
    # the defining property: each weight within half a step of its quantised value, up to the rounding of w / scale
    # (at most 127.5 u, u = 2^-24) and of scale itself (|q| <= 127 steps of u scale): |q s - w| <= s (1/2 + 255 u)
    dequant = q.numpy().astype(np.float64) * scale.numpy()
    wt = t.astype("float32").numpy().astype(np.float64)
    assert (np.abs(dequant - wt) <= scale.numpy() * (0.5 + 255 * U)).all()


def test_gradients_are_refused_and_no_grad_works():
    w = paddle.randn([8, 5]).astype("bfloat16")
    x = paddle.randn([2, 8])
    x.stop_gradient = False
    with pytest.raises(ValueError, match=r"weight_matmul is inference only .*x require\(s\) gradients"):
        ops.weight_matmul(x, w)
    with paddle.no_grad():
        assert ops.weight_matmul(x, w).shape == [2, 5]
