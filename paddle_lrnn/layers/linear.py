"""Linear and Embedding layers whose weights may be stored in 16 bits or int8, used by every family, and the norms'
and mixes' casts of small weights to the activations' dtype.

Paddle's CPU build has no bfloat16 or float16 matrix product (nor layer norm). So on CPU a model whose matrices are
16-bit or int8 ("weight-only": int8 with one float32 scale per output, ops.quantize_int8) computes with float32
activations, sums and recurrent states, and only its matrices stay in their storage format:

    Linear      y = x @ W through ops.weight_matmul, which streams W in its 2 or 1 bytes per weight
    Embedding   the looked-up rows widened to float32; attend(h) = h @ W^T (an embedding that is also the head)
    the rest    norms, token-shift mixes, decays, convolution filters: widened on the fly (small vectors, cheap)

activation_dtype(weight) says which dtype the activations take: float32 on CPU for such weights, else the weight's
own dtype (on a GPU Paddle's own 16-bit kernels run as they are). Where gradients are wanted from such a layer (its
weight or its input requires them), the product runs on a float32 copy of the weight instead, so that it stays
differentiable; training itself keeps float32 weights.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..ops import quantize_int8, weight_matmul

WEIGHT_ONLY = (paddle.bfloat16, paddle.float16, paddle.int8)


def weight_only(weight):
    """Whether products with `weight` run through ops.weight_matmul: a 16-bit or int8 weight in eager mode on CPU,
    and int8 anywhere (no other product takes int8 weights)."""
    if weight.dtype == paddle.int8:
        return True
    return weight.dtype in WEIGHT_ONLY and paddle.in_dynamic_mode() and weight.place.is_cpu_place()


def activation_dtype(weight):
    """The dtype activations take next to `weight`: float32 where weight_only(weight), else the weight's dtype."""
    return paddle.float32 if weight_only(weight) else weight.dtype


def as_dtype_of(weight, x):
    """A small weight (a norm's scale, a mix, a filter) in x's dtype, for elementwise work with x."""
    return weight if weight is None or weight.dtype == x.dtype else weight.astype(x.dtype)


def weight_only_layers(model):
    """{parameter name of the weight: layer} of every Linear and Embedding in `model`: the matrices that may be
    stored in 16 bits or int8."""
    return {(f"{name}." if name else "") + "weight": layer for name, layer in model.named_sublayers(include_self=True)
            if isinstance(layer, _WeightOnly)}


def _needs_gradient(*tensors):
    return paddle.is_grad_enabled() and any(t is not None and not t.stop_gradient for t in tensors)


def quantize_weight(weight, per_row=False):
    """(q int8, scale float32) of a [K, N] weight by ops.quantize_int8: one scale per column, or per row with
    per_row (an embedding [vocab, dim] that is also the head, whose outputs are its rows)."""
    with paddle.no_grad():
        if not per_row:
            return quantize_int8(weight)
        q, scale = quantize_int8(weight.t())
        return q.t().contiguous(), scale


def _int8_parameter(layer, shape, name):
    """An int8 parameter of `shape` (no gradient), empty under paddle.LazyGuard until a value is shared into it."""
    param = layer.create_parameter(shape, dtype="int8", default_initializer=nn.initializer.Constant(0))
    param.stop_gradient = True
    setattr(layer, name, param)


class _WeightOnly:
    """What Linear and Embedding share: int8 storage with per-output scales (`weight_scale`)."""

    _scale_count_axis = 1  # the axis of the weight with one scale per entry (Linear's outputs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_scale = None  # (a parameter once int8)

    def to_int8(self):
        """Makes the weight int8 with float32 scales in place: quantize_int8 of the current weight, or (under
        paddle.LazyGuard, for weights loaded next) empty parameters of the right shapes."""
        if self.weight.dtype == paddle.int8:
            raise ValueError(f"{type(self).__name__} {list(self.weight.shape)} is already int8")
        shape = list(self.weight.shape)
        lazy = not self.weight._is_initialized() if paddle.in_dynamic_mode() else True
        if not lazy:
            q, scale = quantize_weight(self.weight, per_row=self._scale_count_axis == 0)
        _int8_parameter(self, shape, "weight")
        self.weight_scale = self.create_parameter([shape[self._scale_count_axis]],
                                                  default_initializer=nn.initializer.Constant(1.0))
        self.weight_scale.stop_gradient = True
        if not lazy:
            q._share_buffer_to(self.weight)
            scale._share_buffer_to(self.weight_scale)

    def dequantized_weight(self):
        """The weight in float32 (times its scales for int8): for products that need gradients or float32."""
        w = self.weight.astype(paddle.float32)
        if self.weight_scale is None:
            return w
        return w * (self.weight_scale.unsqueeze(1) if self._scale_count_axis == 0 else self.weight_scale)


class Linear(_WeightOnly, nn.Linear):
    """nn.Linear (weight [in, out]) whose 16-bit or int8 weight goes through ops.weight_matmul on CPU."""

    def forward(self, x):
        w = self.weight
        if not weight_only(w):
            return super().forward(x)
        if _needs_gradient(x, w):
            y = paddle.matmul(x.astype(paddle.float32), self.dequantized_weight())
        else:
            y = weight_matmul(x.astype(paddle.float32), w, self.weight_scale)
        return y if self.bias is None else y + self.bias.astype(paddle.float32)


class Embedding(_WeightOnly, nn.Embedding):
    """nn.Embedding ([vocab, dim]) whose rows come out in activation_dtype(weight), with attend(h) = h @ weight^T for
    a model whose output head is its embedding (int8: one scale per row, i.e. per vocabulary entry)."""

    _scale_count_axis = 0

    def forward(self, ids):
        w = self.weight
        if not weight_only(w):
            return super().forward(ids)
        rows = F.embedding(ids, w).astype(paddle.float32)
        if self.weight_scale is not None:
            rows = rows * F.embedding(ids, self.weight_scale.unsqueeze(1))
        return rows

    def attend(self, h):
        """Logits h @ weight^T ([..., dim] -> [..., vocab])."""
        w = self.weight
        if not weight_only(w):
            return paddle.matmul(h.astype(w.dtype), w, transpose_y=True)
        if _needs_gradient(h, w):
            return paddle.matmul(h.astype(paddle.float32), self.dequantized_weight(), transpose_y=True)
        return weight_matmul(h.astype(paddle.float32), w, self.weight_scale, transpose_weight=True)
