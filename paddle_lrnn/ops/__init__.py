"""Public operators: each is a custom C++/CUDA kernel with a pure-Paddle twin in `reference` (the spec).

    wkv               RWKV time-mix recurrence (RWKV-v2, O(T))
    timex             RWKV-v2's original causal depthwise convolution (O(T^2))
    depthwise_conv1d  the same kernel with a short filter (HGRN2's short convolution)
    gla               gated outer-product recurrence (HGRN2)
    mru_scan          cumulative matrix product along time (MRU)
    weight_matmul     x @ weight with bfloat16/float16/int8 weights and float32 activations (CPU decoding)
    quantize_int8     per-column int8 quantisation of a weight for weight_matmul

Operators that know a model live beside it, e.g. the fused RWKV-v2 decoding step in models/rwkv2/rwkv2_step.py. The
argument checks (checks) and the loader of the operator library (library) serve them too. cpu_isa() names the
instruction set the CPU kernels run with (PADDLE_LRNN_ISA caps it).
"""
from . import reference
from .depthwise_conv1d import depthwise_conv1d
from .gla import gla
from .library import cpu_isa
from .mru_scan import mru_scan
from .timex import timex
from .weight_matmul import quantize_int8, weight_matmul
from .wkv import wkv

__all__ = ["cpu_isa", "depthwise_conv1d", "gla", "mru_scan", "quantize_int8", "reference", "timex", "weight_matmul",
           "wkv"]
