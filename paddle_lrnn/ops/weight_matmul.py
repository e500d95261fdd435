"""Matrix products with 16-bit or int8 weights and float32 activations, for decoding on CPU (kernel in
custom_ops/kernels/weight_matmul.h), and the int8 quantiser that makes such weights.

Paddle's CPU build has no bfloat16 or float16 matmul, and decoding one token is bound by the bytes of weights read:
a layer whose Linear weight is stored in 16 bits, or quantised with quantize_int8, calls

    y = weight_matmul(x, linear.weight)        # bfloat16 / float16 weight, [in, out] as nn.Linear stores it
    y = weight_matmul(x, q, scale)             # q, scale = quantize_int8(linear.weight)
    y = weight_matmul(x, embedding.weight, transpose_weight=True)   # [vocab, dim]: an embedding that is the head

instead of paddle.matmul(x, linear.weight) (adding the bias itself), and reads 2 (or 1) bytes per weight instead
of 4. Inference only: neither operator has a gradient. paddle_lrnn.layers.linear's Linear and Embedding make these
calls themselves when their weights are 16-bit or int8.
"""
import paddle

from . import checks
from .library import library

OP = "paddle_lrnn.ops.weight_matmul"
QUANTIZE_OP = "paddle_lrnn.ops.quantize_int8"
WEIGHT_DTYPES = (paddle.bfloat16, paddle.float16, paddle.int8)
QUANTIZE_DTYPES = (paddle.float32, paddle.bfloat16, paddle.float16)


def _refuse_gradients(op, names, tensors):
    if paddle.is_grad_enabled() and any(t is not None and not t.stop_gradient for t in tensors):
        needing = ", ".join(n for n, t in zip(names, tensors) if t is not None and not t.stop_gradient)
        raise ValueError(f"{op} is inference only (no backward), but {needing} require(s) gradients: call it under "
                         "paddle.no_grad()")


@paddle.jit.not_to_static  # plain Python while to_static traces: it checks what is known then (checks)
def check_args(x, weight, scale, transpose_weight=False):
    # (written for speed as well: a decoding step calls this for every matrix, and these checks cost more than the
    # product of a small one; len(x.shape) rather than x.ndim, places compared as strings only when not both CPU)
    if not checks.is_tensor(x):
        raise TypeError(f"{OP}: x must be a paddle.Tensor [..., K], got {type(x).__name__}")
    shape = x.shape
    if not shape:
        raise ValueError(f"{OP}: x must have at least one dimension [..., K], got a 0-d tensor")
    if x.dtype != paddle.float32:
        raise TypeError(f"{OP}: x has dtype {checks._dtype_name(x.dtype)}, expected float32 (the activations)")
    checks.tensor(OP, "weight", weight, "[K, N]", WEIGHT_DTYPES)
    if 0 in shape:
        raise ValueError(f"{OP}: x is empty (shape {list(shape)}); every dimension must be at least 1")
    N, K = weight.shape if transpose_weight else weight.shape[::-1]
    if not checks.dims_match([shape[-1]], [K]):
        layout = "[out, in] (transpose_weight)" if transpose_weight else "[in, out] as nn.Linear does"
        raise ValueError(f"{OP}: x has shape {list(shape)}, expected [..., {K}] (the inputs of weight "
                         f"{list(weight.shape)}, stored {layout})")
    tensors, names = [x, weight], ["x", "weight"]
    if weight.dtype == paddle.int8:
        if scale is None:
            raise ValueError(f"{OP}: int8 weights need their scale ([N] float32, from quantize_int8)")
        checks.tensor(OP, "scale", scale, "[N]", (paddle.float32,))
        checks.shape(OP, "scale", scale, [N], " (one per output: per row of weight)" if transpose_weight else
                     " (one per column of weight)")
        tensors.append(scale)
        names.append("scale")
    elif scale is not None:
        raise ValueError(f"{OP}: scale goes with int8 weights only; weight is {checks._dtype_name(weight.dtype)}")
    dynamic = paddle.in_dynamic_mode()
    if dynamic and not all(t.place.is_cpu_place() for t in tensors):
        checks.same_place(OP, names, tensors)
    if dynamic and not weight.is_contiguous():
        raise ValueError(f"{OP}: weight must be contiguous (row-major, as nn.Linear and nn.Embedding store it); "
                         "make it so once with weight.contiguous() rather than on every call")
    _refuse_gradients(OP, names, tensors)


def weight_matmul(x, weight, scale=None, *, transpose_weight=False):
    """y = x @ dequant(weight) in float32 (x @ dequant(weight)^T with transpose_weight), weights streamed in their
    16-bit or int8 storage.

    On CPU the product runs in one operator (vectorised, split over the operator library's threads,
    PADDLE_LRNN_NUM_THREADS), accumulating in float32; its results do not depend on the thread count or on the
    other rows of x. On other devices it falls back to paddle.matmul on a float32 copy of the weight (GPUs have
    16-bit products of their own; this keeps one call for every device).

    Args:
        x: [..., K] float32 activations (any number of rows; one to a few per decoding step).
        weight: [K, N] bfloat16, float16 or int8, [in, out] as nn.Linear stores it; contiguous. With
            transpose_weight, [N, K] ([out, in]: an nn.Embedding's [vocab, dim] used as the output head).
        scale: [N] float32 for int8 weights (dequant(weight) = weight * scale, one scale per output: per column of
            [K, N], per row of [N, K]); None otherwise.

    Returns:
        [..., N] float32. No gradient: call it under paddle.no_grad() (a call that would need one raises).
    """
    check_args(x, weight, scale, transpose_weight)
    if not paddle.in_dynamic_mode() or not x.place.is_cpu_place():
        from .reference import dequantized

        return paddle.matmul(x, dequantized(weight, scale, transpose_weight), transpose_y=transpose_weight)
    # (x of any rank: the rows are its leading dimensions)
    return library().lrnn_weight_matmul(x, weight, scale, bool(transpose_weight))


@paddle.jit.not_to_static
def check_quantize_args(weight):
    checks.tensor(QUANTIZE_OP, "weight", weight, "[K, N]", QUANTIZE_DTYPES)
    _refuse_gradients(QUANTIZE_OP, ["weight"], [weight])


def quantize_int8(weight):
    """Symmetric per-column int8 quantisation of a [K, N] weight (nn.Linear's [in, out]: one scale per output).

        scale[n] = max_k |weight[k, n]| / 127,   q[k, n] = round(weight[k, n] / scale[n])  in [-127, 127]

    computed in float32 (a 16-bit weight is widened exactly first), rounding halves to even as paddle.round
    (and numpy.rint, torch.round) does; a column of zeros gets scale 0 and q 0. The results equal the pure-Paddle
    reference (paddle_lrnn.ops.reference.quantize_int8) bit for bit on any machine: there is no sum, only exactly
    rounded divisions. Inference only.

    Args:
        weight: [K, N] float32, bfloat16 or float16, finite.
    Returns:
        (q [K, N] int8, scale [N] float32), for weight_matmul(x, q, scale).
    """
    check_quantize_args(weight)
    if not paddle.in_dynamic_mode() or not weight.place.is_cpu_place():
        from .reference import quantize_int8 as reference_quantize

        return reference_quantize(weight)
    try:
        q, scale = library().lrnn_quantize_int8(weight.contiguous())
    except OSError as err:  # the kernel's check for non-finite weights (Paddle raises it as OSError)
        raise ValueError(f"{QUANTIZE_OP}: weight holds infinite or NaN values") from None
    return q, scale
