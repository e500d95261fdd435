"""Public operators: each is a custom C++/CUDA kernel with a pure-Paddle twin in `reference` (the spec).

    wkv               RWKV time-mix recurrence (RWKV-v2, O(T))
    timex             RWKV-v2's original causal depthwise convolution (O(T^2))
    depthwise_conv1d  the same kernel with a short filter (HGRN2's short convolution)
    gla               gated outer-product recurrence (HGRN2)
    mru_scan          cumulative matrix product along time (MRU)
    rwkv2_step        one whole RWKV-v2 decoding step (CPU, float32, inference only; its spec is the model's
                      layer-by-layer step, RWKV2ForCausalLM with fused_step = False)
    weight_matmul     x @ weight with bfloat16/float16/int8 weights and float32 activations (CPU decoding)
    quantize_int8     per-column int8 quantisation of a weight for weight_matmul

cpu_isa() names the instruction set the CPU kernels run with (PADDLE_LRNN_ISA caps it).
"""
from . import reference
from ._library import cpu_isa
from .gla import gla
from .mru_scan import mru_scan
from .rwkv2_step import rwkv2_step
from .timex import depthwise_conv1d, timex
from .weight_matmul import quantize_int8, weight_matmul
from .wkv import wkv

__all__ = ["cpu_isa", "depthwise_conv1d", "gla", "mru_scan", "quantize_int8", "reference", "rwkv2_step", "timex",
           "weight_matmul", "wkv"]
