"""flash-linear-attention / Hugging Face HGRN2 checkpoints (fla's HGRN2ForCausalLM) <-> HGRN2ForCausalLM.

from_torch(src): src is a checkpoint directory holding config.json (model_type "hgrn2") and the weights as
model.safetensors (read without torch), a sharded index (model.safetensors.index.json or
pytorch_model.bin.index.json) or pytorch_model.bin (read with the safe torch.save reader: nothing in it is run);
or the path of one of those weight files inside such a directory. Names map one to one; Linear weights are
transposed ([out, in] -> [in, out]), conv weights [C, 1, W] -> [C, W]; a tied model's lm_head.weight, if the file
has one, must equal model.embeddings.weight and is dropped. Every config.json field is kept (fields fla has are
HGRN2Config's, the rest such as "architectures", "dtype", "transformers_version" ride along in config.extra), so
the converted model's config.json holds the original's fields.

The weights keep the checkpoint's dtype (bfloat16 stays bfloat16) unless asked otherwise.

to_torch(model, out_dir): writes out_dir/config.json and out_dir/model.safetensors (metadata format "pt") that fla's
HGRN2ForCausalLM.from_pretrained loads: fla's names and layouts, no lm_head.weight when tied (as save_pretrained
writes it). Each tensor is written in its own dtype, or in the config's "dtype" (or "torch_dtype") when that is
bfloat16 or float16 and holds the values exactly, so a checkpoint converted and written back is bit-identical.
"""
import json
import os

import numpy as np
import paddle

from ..io import CheckpointError, cast, load_weights, paddle_name, safetensors_metadata
from ..io.atomic import atomic_directory, atomic_write
from ..io.safetensors import save_safetensors
from ..models.hgrn2 import HGRN2Config, HGRN2ForCausalLM
from ..models.modeling_utils import CONFIG_NAME, ModelFileError, check_weights, linear_weight_names, read_config
from . import build, floating, lazy

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
UNSUPPORTED_FIELDS = ("attnres_block_size",)  # fla options that add layers paddle_lrnn does not have


def _locate(src):
    """(directory, weights path) of a checkpoint given as a directory or as a weight file inside one."""
    src = os.fspath(src)
    if os.path.isdir(src):
        directory = src
        for name in WEIGHT_FILES:
            if os.path.isfile(os.path.join(src, name)):
                return directory, os.path.join(src, name)
        if not os.path.isfile(os.path.join(src, CONFIG_NAME)):
            raise ModelFileError(f"{src} is not an HGRN2 checkpoint directory: it has no {CONFIG_NAME} and no "
                                 f"weights ({', '.join(WEIGHT_FILES)})")
        raise ModelFileError(f"{src} has a {CONFIG_NAME} but no weights: expected one of {', '.join(WEIGHT_FILES)}")
    if not os.path.isfile(src):
        raise ModelFileError(f"{src} does not exist")
    return os.path.dirname(os.path.abspath(src)), src


def _read_weights(path):
    """{name: memory-mapped array} of the checkpoint's weight file(s)."""
    if path.endswith(".safetensors") and (safetensors_metadata(path) or {}).get("format") == "paddle":
        raise ModelFileError(f"{path} is a paddle_lrnn model directory (written by save_pretrained), not an fla "
                             f"checkpoint; load it with from_pretrained, or convert it with --to torch")
    try:
        return floating(load_weights(path), path, ModelFileError)
    except CheckpointError as err:
        if "not a state dict" in err.problem:
            raise ModelFileError(f"{path} is not an HGRN2 checkpoint: expected a state dict of tensors") from None
        raise


def read_hgrn2_config(directory):
    """HGRN2Config of a checkpoint directory (every field of its config.json kept); ModelFileError otherwise."""
    data = read_config(directory)
    path = os.path.join(directory, CONFIG_NAME)
    if data.get("model_type") != "hgrn2":
        raise ModelFileError(f"{path} has model_type {data.get('model_type')!r}, not 'hgrn2': this is not an "
                             f"HGRN2 checkpoint")
    for key in UNSUPPORTED_FIELDS:
        if data.get(key) is not None:
            raise ModelFileError(f"{path} sets {key}={data[key]!r}, an fla option paddle_lrnn does not support")
    try:
        return HGRN2Config.from_dict(data, path)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: {err}") from None


def torch_layout(model):
    """{name: (shape in fla's layout, kind)} for every tensor fla's state dict holds for this model; kind is
    "linear" (transposed), "conv" ([C, 1, W] in fla, [C, W] here) or "plain"."""
    linear = linear_weight_names(model)
    out = {}
    for name, param in model.named_parameters():
        shape = list(param.shape)
        if name in linear:
            out[name] = (shape[::-1], "linear")
        elif "_conv1d." in name:
            out[name] = ([shape[0], 1, shape[1]], "conv")
        else:
            out[name] = (shape, "plain")
    return out


def read_torch(src):
    """(config, lazy tensors in Paddle's layout, weights path) of an fla / Hugging Face HGRN2 checkpoint."""
    directory, weights = _locate(src)
    config = read_hgrn2_config(directory)
    arrays = _read_weights(weights)
    with paddle.LazyGuard():
        model = HGRN2ForCausalLM(config)
    layout = torch_layout(model)
    if config.tie_word_embeddings and "lm_head.weight" in arrays:
        head, emb = arrays.pop("lm_head.weight"), arrays.get("model.embeddings.weight")
        if emb is not None and (head.shape != emb.shape or head.dtype != emb.dtype or not np.array_equal(head, emb)):
            raise ModelFileError(f"{weights}: tie_word_embeddings is true in {CONFIG_NAME} but lm_head.weight differs "
                                 f"from model.embeddings.weight")
    check_weights({k: v.shape for k, v in arrays.items()}, {k: s for k, (s, _) in layout.items()}, weights,
                  f"the config in {CONFIG_NAME}")
    tensors = {name: lazy(arrays[name], transpose=kind == "linear", shape=[s[0], s[2]] if kind == "conv" else None)
               for name, (s, kind) in layout.items()}
    return config, tensors, weights


def from_torch(src, dtype=None):
    """An HGRN2ForCausalLM holding the weights of an fla / Hugging Face HGRN2 checkpoint (see the module docstring)."""
    config, tensors, weights = read_torch(src)
    return build(HGRN2ForCausalLM, config, tensors, weights, dtype)


def _storage_dtype(config):
    declared = config.extra.get("dtype", config.extra.get("torch_dtype"))
    return declared if declared in ("bfloat16", "float16") else None


def _as_stored(value, dtype):
    """value in `dtype` if that holds it exactly, else as it is."""
    if dtype is None or paddle_name(value.dtype) == dtype:
        return value
    packed = cast(value, dtype)
    return packed if np.array_equal(cast(packed, paddle_name(value.dtype)), value, equal_nan=True) else value


def to_torch(model, out_dir):
    """Writes `model` as an fla-loadable checkpoint directory (config.json + model.safetensors), atomically: the
    directory appears complete or not at all, replacing an existing one."""
    if not isinstance(model, HGRN2ForCausalLM):
        raise TypeError(f"to_torch needs an HGRN2ForCausalLM, got {type(model).__name__}")
    dtype = _storage_dtype(model.config)
    tensors, params = {}, dict(model.named_parameters())
    for name, (shape, kind) in torch_layout(model).items():
        def produce(param=params[name], kind=kind):
            value = param.numpy()
            return np.ascontiguousarray(value.T if kind == "linear" else value[:, None, :] if kind == "conv" else value)
        have = str(params[name].dtype).rsplit(".", 1)[-1]
        # written as it is (one tensor in memory at a time), or in the declared dtype if that holds it exactly
        tensors[name] = (have, tuple(shape), produce) if dtype in (None, have) else _as_stored(produce(), dtype)
    config = model.config.to_dict()
    kept = {v[0] if isinstance(v, tuple) else paddle_name(v.dtype) for v in tensors.values()}
    if dtype is not None and kept != {dtype}:  # some values are not representable in the declared dtype
        config["dtype" if "dtype" in config else "torch_dtype"] = "float32" if "float32" in kept else kept.pop()
    out_dir = os.path.abspath(os.fspath(out_dir))
    with atomic_directory(out_dir) as staging:
        with atomic_write(os.path.join(staging, CONFIG_NAME), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        save_safetensors(os.path.join(staging, "model.safetensors"), tensors, metadata={"format": "pt"})
    return out_dir
