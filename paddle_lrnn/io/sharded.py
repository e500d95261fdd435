"""Sharded checkpoints: an index JSON (``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``) whose
``weight_map`` maps each tensor name to the shard file holding it.

The index is untrusted: every shard name must be a relative path of plain components (no absolute paths, drive
letters, backslashes, ``..`` or ``.`` parts, NUL bytes), and the file it names, with symbolic links resolved, must
lie inside the index's directory and be a regular file. (A Hugging Face cache snapshot keeps its files as links into
``../../blobs``; pass ``allow_external_links=True`` for such a directory: names are still checked, only where
links may point is relaxed.) Shards ending in ``.safetensors`` are read with load_safetensors (only the tensors the
index assigns to them); any other shard is read with load_torch_checkpoint and must be a dict of arrays.
"""
import json
import os
import re

from ._files import open_regular
from .errors import CheckpointError

__all__ = ["read_shard_index", "load_sharded_checkpoint"]

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_MAX_INDEX_BYTES = 64 << 20
_BAD_COMPONENT = re.compile(r"^\.{1,2}$|[\x00\\:]")


def _find_index(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in INDEX_NAMES:
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise CheckpointError(path, f"the directory holds none of {', '.join(INDEX_NAMES)}")
    return path


def read_shard_index(index_path, *, allow_external_links=False):
    """Validated weight map of a sharded checkpoint: {tensor name: absolute path of its shard file}.

    `index_path`: the index JSON, or the checkpoint directory holding one of INDEX_NAMES."""
    index_path = _find_index(index_path)
    f, size = open_regular(index_path)
    with f:
        if size > _MAX_INDEX_BYTES:
            raise CheckpointError(index_path, f"the index is {size} bytes, too large for a shard index")
        raw = f.read()
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(index_path, f"the index is not valid JSON: {str(e)[:200]}") from None
    if type(index) is not dict or type(index.get("weight_map")) is not dict:
        raise CheckpointError(index_path, "the index has no weight_map object")
    directory = os.path.dirname(os.path.abspath(index_path))
    real_directory = os.path.realpath(directory)
    checked = {}
    out = {}
    for name, shard in index["weight_map"].items():
        if type(shard) is not str:
            raise CheckpointError(index_path, f"weight_map maps {name[:200]!r} to a {type(shard).__name__}, "
                                              f"not a file name")
        if shard not in checked:
            parts = shard.split("/")
            if not shard or shard.startswith("/") or any(not p or _BAD_COMPONENT.search(p) for p in parts):
                raise CheckpointError(index_path, f"weight_map names the shard {shard[:200]!r}, which is not a "
                                                  f"plain relative path inside the checkpoint directory")
            full = os.path.join(directory, *parts)
            real = os.path.realpath(full)
            if not allow_external_links and os.path.commonpath([real, real_directory]) != real_directory:
                raise CheckpointError(index_path, f"shard {shard[:200]!r} resolves to {real}, outside the "
                                                  f"checkpoint directory {real_directory}")
            if not os.path.isfile(real):
                raise CheckpointError(index_path, f"shard {shard[:200]!r} is missing or not a regular file")
            checked[shard] = full
        out[name] = checked[shard]
    return out


def load_sharded_checkpoint(index_path, names=None, *, allow_external_links=False):
    """Loads the tensors of a sharded checkpoint into {name: numpy array}, one shard at a time.

    `names`: the tensors to load (default: all in the weight map, in its order). A name missing from the weight
    map, or from the shard the map assigns it to, is refused with CheckpointError."""
    from .safetensors import load_safetensors
    from .torch_checkpoint import load_torch_checkpoint
    import numpy as np

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
        if shard.endswith(".safetensors"):
            from .safetensors import safetensors_entries
            present = safetensors_entries(shard)
            missing = [n for n in shard_names if n not in present]
            if missing:
                raise CheckpointError(shard, f"the index assigns {missing[0][:200]!r} to this shard, which lacks it")
            loaded.update(load_safetensors(shard, shard_names))
        else:
            state = load_torch_checkpoint(shard)
            if not isinstance(state, dict):
                raise CheckpointError(shard, f"the shard holds a {type(state).__name__}, not a state dict")
            for n in shard_names:
                if n not in state:
                    raise CheckpointError(shard, f"the index assigns {n[:200]!r} to this shard, which lacks it")
                if not isinstance(state[n], np.ndarray):
                    raise CheckpointError(shard, f"entry {n[:200]!r} is a {type(state[n]).__name__}, not a tensor")
                loaded[n] = state[n]
            del state
    return {name: loaded[name] for name in wanted}
