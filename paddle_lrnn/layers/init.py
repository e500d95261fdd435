"""Weight initialisation shared by the RWKV families: RWKV-LM's RWKV_Init (the same rules in RWKV-v2 and RWKV-4)."""
import math

import numpy as np
import paddle
import paddle.nn as nn


def orthogonal_(param, gain, transpose):
    """Sets param to gain x a (semi-)orthogonal matrix drawn from Paddle's RNG (QR of a Gaussian, sign-fixed);
    zeros for gain 0. transpose: param holds the transpose of the [out, in] matrix (Paddle Linear layout)."""
    rows, cols = param.shape[::-1] if transpose else param.shape
    if gain == 0:
        param.set_value(paddle.zeros(param.shape, param.dtype))
        return
    a = paddle.randn([max(rows, cols), min(rows, cols)]).numpy().astype("float64")
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    m = q if rows >= cols else q.T  # [rows, cols] with orthonormal columns (or rows)
    param.set_value(paddle.to_tensor((gain * (m.T if transpose else m)).astype("float32")).astype(param.dtype))


def rwkv_init(model, vocab_size, n_embd, scale_init):
    """RWKV_Init: every nn.Embedding and nn.Linear of `model` (in sub-layer order) gets an orthogonal matrix, with
    the gain computed from PyTorch's [out, in] shape whatever the storage layout: sqrt(out / in) when out > in, else 1;
    the [vocab, n_embd] embedding sqrt(max(vocab, n_embd)) x 1e-4 ("small init embedding"; other embeddings 0), the
    [vocab, n_embd] head 0.5 x its gain. scale_init maps a sub-layer name (or the end of one after a dot, e.g.
    "att.key") to the scale that replaces those defaults, as the original's `scale_init` attributes do (0: zeros)."""
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Embedding):
            out_dim, in_dim = layer.weight.shape
            gain, scale = math.sqrt(max(out_dim, in_dim)), (1e-4 if (out_dim, in_dim) == (vocab_size, n_embd) else 0.0)
            transpose = False
        elif isinstance(layer, nn.Linear):
            in_dim, out_dim = layer.weight.shape
            gain = math.sqrt(out_dim / in_dim) if out_dim > in_dim else 1.0
            scale = 0.5 if (out_dim, in_dim) == (vocab_size, n_embd) else 1.0
            transpose = True
        else:
            continue
        for key, value in scale_init.items():
            if name == key or name.endswith("." + key):
                scale = value
        orthogonal_(layer.weight, gain * scale, transpose)
