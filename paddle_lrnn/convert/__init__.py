"""Converters between the original PyTorch checkpoints and paddle_lrnn models, one module per family, both ways.
Every reader is safe: no code from a checkpoint is ever executed (see paddle_lrnn.io)."""
import importlib

FAMILIES = ("rwkv2",)


def converter(family):
    """The module converting `family` checkpoints (from_torch / to_torch)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{family}")
