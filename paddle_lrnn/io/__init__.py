"""File formats for paddle_lrnn: safetensors (through the `safetensors` package), sharded checkpoints, torch.save
checkpoints read without torch and without running anything from the file, atomic writes.

Tensors come back as numpy arrays that memory-map the file (nothing is read until used), with Paddle's element
types (bfloat16 as uint16 bits). Nothing here imports torch or paddle; every refused file raises `CheckpointError`.
Importing this package is cheap: the submodules (and numpy) load on first use of a name.

    load_safetensors(path, names=None) -> dict          save_safetensors(path, tensors, metadata=None)
    safetensors_entries(path) -> {name: (dtype, shape)}  safetensors_metadata(path) -> dict | None
    load_sharded_checkpoint(index_path) -> dict         read_shard_index(index_path) -> {name: shard path}
    load_weights(path) -> dict (any of the above)       save_sharded(directory, tensors, metadata, max_shard_size)
    load_torch_checkpoint(path) -> object               save_torch_checkpoint(path, obj)
    atomic_write(path, mode="wb"), atomic_directory(path), atomic_files(directory)
    read_json(path, error), parse_json(raw, error)       cast(array, dtype_name), paddle_name(numpy dtype)
"""
import importlib

from .errors import CheckpointError

_EXPORTS = {
    "load_torch_checkpoint": "torch_checkpoint", "save_torch_checkpoint": "torch_checkpoint",
    "load_safetensors": "safetensors", "save_safetensors": "safetensors", "safetensors_metadata": "safetensors",
    "safetensors_entries": "safetensors",
    "load_sharded_checkpoint": "sharded", "read_shard_index": "sharded", "load_weights": "sharded",
    "save_sharded": "sharded",
    "atomic_write": "atomic", "atomic_directory": "atomic", "atomic_files": "atomic",
    "read_json": "_files", "parse_json": "_files", "cast": "_dtypes", "paddle_name": "_dtypes",
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
