"""Public operators: each is a custom C++/CUDA kernel with a pure-Paddle twin in `reference` (the spec).

    wkv               RWKV time-mix recurrence (RWKV-v2, O(T))
    timex             RWKV-v2's original causal depthwise convolution (O(T^2))
    depthwise_conv1d  the same kernel with a short filter (HGRN2's short convolution)
    gla               gated outer-product recurrence (HGRN2)
    mru_scan          cumulative matrix product along time (MRU)
    rwkv2_step        one whole RWKV-v2 decoding step (CPU, float32, inference only; its spec is the model's
                      layer-by-layer step, RWKV2ForCausalLM with fused_step = False)
"""
from . import reference
from .gla import gla
from .mru_scan import mru_scan
from .rwkv2_step import rwkv2_step
from .timex import depthwise_conv1d, timex
from .wkv import wkv

__all__ = ["depthwise_conv1d", "gla", "mru_scan", "reference", "rwkv2_step", "timex", "wkv"]
