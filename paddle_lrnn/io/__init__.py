"""File formats for paddle_lrnn: torch.save checkpoints and safetensors, read and written with numpy only.

Nothing here imports torch or paddle, and reading never runs code from a file (see torch_checkpoint's docstring
for the allow-list). Every refused file raises `CheckpointError`. Importing this package is cheap: the submodules
(and numpy) load on first use of a name.

    load_torch_checkpoint(path) -> object              save_torch_checkpoint(path, obj)
    load_safetensors(path, names=None) -> dict         save_safetensors(path, tensors, metadata=None)
    safetensors_metadata(path) -> dict | None          load_sharded_checkpoint(index_path, names=None) -> dict
    read_shard_index(index_path) -> dict[str, str]     atomic_write(path, mode="wb")
    safetensors_entries(path) -> {name: (dtype, shape)}  atomic_directory(path), atomic_files(directory)
    BFloat16(array)   (store an array as bfloat16)     TorchDtype   (a torch dtype found in a checkpoint)
"""
import importlib

from .errors import CheckpointError

_EXPORTS = {
    "load_torch_checkpoint": "torch_checkpoint", "save_torch_checkpoint": "torch_checkpoint",
    "TorchDtype": "torch_checkpoint",
    "load_safetensors": "safetensors", "save_safetensors": "safetensors", "safetensors_metadata": "safetensors",
    "safetensors_entries": "safetensors",
    "load_sharded_checkpoint": "sharded", "read_shard_index": "sharded",
    "atomic_write": "atomic", "atomic_directory": "atomic", "atomic_files": "atomic", "BFloat16": "_dtypes",
}
__all__ = ["CheckpointError", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
