"""Public operators: each is a custom C++/CUDA kernel with a pure-Paddle twin in `reference` (the spec)."""
from . import reference
from .timex import depthwise_conv1d, timex
from .wkv import wkv

__all__ = ["depthwise_conv1d", "reference", "timex", "wkv"]
