"""Public operators: each is a custom C++/CUDA kernel with a pure-Paddle twin in `reference` (the spec).

    wkv               RWKV time-mix recurrence (RWKV-v2, O(T))
    timex             RWKV-v2's original causal depthwise convolution (O(T^2))
    depthwise_conv1d  the same kernel with a short filter (HGRN2's short convolution)
    gla               gated outer-product recurrence (HGRN2)
    mru_scan          cumulative matrix product along time (MRU)

Operators that know a model live beside it, e.g. the fused RWKV-v2 decoding step in models/rwkv2/rwkv2_step.py. The
argument checks (checks) and the loader of the operator library (library) serve them too.
"""
from . import reference
from .depthwise_conv1d import depthwise_conv1d
from .gla import gla
from .mru_scan import mru_scan
from .timex import timex
from .wkv import wkv

__all__ = ["depthwise_conv1d", "gla", "mru_scan", "reference", "timex", "wkv"]
