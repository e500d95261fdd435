"""ShortConvolution: a causal depthwise 1-D convolution with a short kernel over [B, T, C] sequences, with a cache
that lets a sequence be fed in pieces (one token at a time, chunks, or all at once: the same outputs).

The weight is [C, W], PyTorch's depthwise Conv1d weight [C, 1, W] squeezed (fla's ShortConvolution, kernel_size W):
    out[b, t, c] = sum_{j=0..W-1} weight[c, j] * x[b, t - (W-1) + j, c]      (x before the start counts as 0)
No bias and no activation (what HGRN2 uses). The cache is [B, C, W]: the last W inputs seen, oldest first, zeros
before the start of the sequence; this is the layout of fla's conv cache (its last column is the newest input, which
the next call does not need, but keeping it makes the cache interchangeable with fla's).
The convolution runs on paddle_lrnn.ops.depthwise_conv1d (a custom kernel).
"""
import paddle
import paddle.nn as nn

from ..ops.depthwise_conv1d import depthwise_conv1d
from .linear import as_dtype_of


class ShortConvolution(nn.Layer):
    def __init__(self, hidden_size, kernel_size):
        super().__init__()
        if int(kernel_size) < 1:
            raise ValueError(f"the short convolution needs kernel_size >= 1, got {kernel_size}")
        self.hidden_size, self.kernel_size = int(hidden_size), int(kernel_size)
        self.weight = self.create_parameter([self.hidden_size, self.kernel_size],
                                            default_initializer=nn.initializer.Normal(0.0, 0.02))

    def zero_cache(self, batch_size, dtype="float32"):
        return paddle.zeros([batch_size, self.hidden_size, self.kernel_size], dtype)

    def forward(self, x, cache=None, output_cache=False):
        """x [B, T, C]; cache [B, C, W] from an earlier call or None (a fresh sequence). Returns (y [B, T, C], the
        cache after the last token if output_cache else None)."""
        W, weight = self.kernel_size, as_dtype_of(self.weight, x)
        xt = x.transpose([0, 2, 1])  # [B, C, T]
        if cache is None and not output_cache:
            return depthwise_conv1d(weight, xt).transpose([0, 2, 1]), None
        if cache is None:
            cache = self.zero_cache(x.shape[0], x.dtype)
        full = paddle.concat([cache[:, :, 1:].astype(x.dtype), xt], axis=2)  # [B, C, W - 1 + T]
        y = depthwise_conv1d(weight, full)[:, :, W - 1:]
        # T >= 1, so full holds at least W columns
        return y.transpose([0, 2, 1]), (full[:, :, -W:] if output_cache else None)

    def extra_repr(self):
        return f"{self.hidden_size}, kernel_size={self.kernel_size}"
