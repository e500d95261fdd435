"""Normalisation layers shared by the model families.

LayerNorm: nn.LayerNorm with its scale and shift used in the input's dtype (a 16-bit model's are widened for its
float32 activations on CPU, where Paddle has no 16-bit layer norm).

RMSNorm: y = x / sqrt(mean(x^2 over the last axis) + eps) * weight, computed in float32 whatever the input dtype and
cast back (as torch.nn.RMSNorm and fla's RMSNorm compute it). The parameter is named `weight` so that checkpoints of
PyTorch models map one to one.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .linear import as_dtype_of


def rms_norm(x, weight=None, eps=1e-6):
    """Functional RMSNorm over the last axis of x; weight [C] or None (no affine scale)."""
    h = x.astype("float32")
    h = h * paddle.rsqrt(paddle.mean(h * h, axis=-1, keepdim=True) + eps)
    if weight is not None:
        h = h * weight.astype("float32")
    return h.astype(x.dtype)


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, self._normalized_shape, as_dtype_of(self.weight, x), as_dtype_of(self.bias, x),
                            self._epsilon)


class RMSNorm(nn.Layer):
    """RMSNorm(hidden_size, eps=1e-6, elementwise_affine=True): a learnable per-channel scale `weight` (init 1) unless
    elementwise_affine is False; no bias."""

    def __init__(self, hidden_size, eps=1e-6, elementwise_affine=True):
        super().__init__()
        self.hidden_size, self.eps = int(hidden_size), float(eps)
        if elementwise_affine:
            self.weight = self.create_parameter([self.hidden_size], default_initializer=nn.initializer.Constant(1.0))
        else:
            self.weight = None

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.hidden_size}, eps={self.eps}, elementwise_affine={self.weight is not None}"
