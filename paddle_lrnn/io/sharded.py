"""Checkpoints of several files: an index JSON (``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``,
Hugging Face's layout) whose ``weight_map`` maps each tensor name to the shard file holding it.

The index is untrusted: every shard name must be a relative path of plain components (no absolute paths, drive
letters, backslashes, ``..`` or ``.`` parts, NUL bytes), and the file it names, with symbolic links resolved, must
lie inside the index's directory and be a regular file (``allow_external_links=True`` relaxes only where links may
point, for a Hugging Face cache snapshot whose files link into ``../../blobs``). Shards are read lazily (memory-mapped,
see `load_safetensors` and `load_torch_checkpoint`); each must hold the tensors the index assigns to it, of the
dtype and shape the index's own checks expect.

`save_sharded` writes the other way: ``model.safetensors``, or when the tensors exceed ``max_shard_size``,
``model-0000i-of-0000N.safetensors`` files and ``model.safetensors.index.json`` (``metadata.total_size`` and
``weight_map``, as Hugging Face writes them), tensor by tensor.
"""
import json
import os
import re

import numpy as np

from ._dtypes import numpy_dtype
from ._files import read_json
from .atomic import atomic_write
from .errors import CheckpointError

__all__ = ["read_shard_index", "load_sharded_checkpoint", "load_weights", "save_sharded", "INDEX_NAMES",
           "WEIGHTS_NAME", "INDEX_NAME"]

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
INDEX_NAMES = (INDEX_NAME, "pytorch_model.bin.index.json")
MAX_SHARD_SIZE = 5 * 10 ** 9  # Hugging Face's default
_BAD_COMPONENT = re.compile(r"^\.{1,2}$|[\x00\\:]")


def _find_index(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in INDEX_NAMES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise CheckpointError(path, f"the directory holds none of {', '.join(INDEX_NAMES)}")
    return path


def read_shard_index(index_path, *, allow_external_links=False):
    """Validated weight map of a sharded checkpoint: {tensor name: path of its shard file}.

    `index_path`: the index JSON, or the checkpoint directory holding one of INDEX_NAMES."""
    index_path = _find_index(index_path)
    index = read_json(index_path, lambda problem: CheckpointError(index_path, f"the index {problem}"))
    if type(index.get("weight_map")) is not dict:
        raise CheckpointError(index_path, "the index has no weight_map object")
    directory = os.path.dirname(os.path.abspath(index_path))
    real_directory = os.path.realpath(directory)
    checked, out = {}, {}
    for name, shard in index["weight_map"].items():
        if type(shard) is not str:
            raise CheckpointError(index_path, f"weight_map maps {name[:200]!r} to a {type(shard).__name__}, not a "
                                              f"file name")
        if shard not in checked:
            parts = shard.split("/")
            if not shard or shard.startswith("/") or any(not p or _BAD_COMPONENT.search(p) for p in parts):
                raise CheckpointError(index_path, f"weight_map names the shard {shard[:200]!r}, which is not a plain "
                                                  f"relative path inside the checkpoint directory")
            full = os.path.join(directory, *parts)
            real = os.path.realpath(full)
            if not allow_external_links and os.path.commonpath([real, real_directory]) != real_directory:
                raise CheckpointError(index_path, f"shard {shard[:200]!r} resolves to {real}, outside the checkpoint "
                                                  f"directory {real_directory}")
            if not os.path.isfile(real):
                raise CheckpointError(index_path, f"shard {shard[:200]!r} is missing or not a regular file")
            checked[shard] = full
        out[name] = checked[shard]
    return out


def load_sharded_checkpoint(index_path, names=None, *, allow_external_links=False):
    """{name: memory-mapped numpy array} of a sharded checkpoint (weight-map order, or the order of `names`). A
    name missing from the weight map, or from the shard the map assigns it to, is refused."""
    from .safetensors import load_safetensors
    from .torch_checkpoint import load_torch_checkpoint

    index_file = _find_index(index_path)
    weight_map = read_shard_index(index_file, allow_external_links=allow_external_links)
    wanted = list(weight_map) if names is None else ([names] if isinstance(names, str) else list(names))
    by_shard = {}
    for name in wanted:
        if name not in weight_map:
            raise CheckpointError(index_file, f"the weight map has no tensor named {str(name)[:200]!r}")
        by_shard.setdefault(weight_map[name], []).append(name)
    loaded = {}
    for shard, shard_names in by_shard.items():
        state = load_safetensors(shard) if shard.endswith(".safetensors") else load_torch_checkpoint(shard)
        if not isinstance(state, dict):
            raise CheckpointError(shard, f"the shard holds a {type(state).__name__}, not a state dict")
        for n in shard_names:
            if not isinstance(state.get(n), np.ndarray):
                raise CheckpointError(shard, f"the index assigns {n[:200]!r} to this shard, which lacks it")
            loaded[n] = state[n]
    return {name: loaded[name] for name in wanted}


def load_weights(path):
    """{name: memory-mapped array} of a weights file (``.safetensors``, a torch.save state dict such as
    ``pytorch_model.bin``) or of a sharded checkpoint (its index file)."""
    from .safetensors import load_safetensors
    from .torch_checkpoint import load_torch_checkpoint

    name = os.path.basename(os.fspath(path))
    if name.endswith(".index.json"):
        return load_sharded_checkpoint(path)
    if name.endswith(".safetensors"):
        return load_safetensors(path)
    state = load_torch_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise CheckpointError(path, "it is not a state dict of tensors")
    return state


def save_sharded(directory, tensors, metadata=None, max_shard_size=MAX_SHARD_SIZE):
    """Writes {name: value} (see save_safetensors: arrays, Paddle tensors or (dtype, shape, producer) triples) into
    `directory` as model.safetensors, or as shards of at most `max_shard_size` bytes of tensors (a larger tensor
    gets a shard of its own) plus model.safetensors.index.json. Returns the names of the files written."""
    from .safetensors import _spec, save_safetensors

    shards, size, total = [{}], 0, 0
    for name, value in tensors.items():
        dtype, shape = _spec(directory, name, value)
        nbytes = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dtype).itemsize
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += nbytes
        total += nbytes
    if len(shards) == 1:
        save_safetensors(os.path.join(directory, WEIGHTS_NAME), shards[0], metadata)
        return [WEIGHTS_NAME]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for file_name, shard in zip(names, shards):
        save_safetensors(os.path.join(directory, file_name), shard, metadata)
        weight_map.update(dict.fromkeys(shard, file_name))
    with atomic_write(os.path.join(directory, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    return [*names, INDEX_NAME]
