"""mikayahlevi/mru-lm training checkpoints <-> MRUForCausalLM.

from_torch(src, config=None): src is a checkpoint that mru-lm's train.py saves (`torch.save` of a dict with `step`,
`model_state_dict`, `optimizer_state_dict`, ...; only `step` and `model_state_dict` are read, with the safe reader:
nothing in the file is run, torch is not needed), or an mru-lm train folder (model.json + checkpoints/, the newest
checkpoint-step-N.pt is taken). The model's sizes are not in the checkpoint: they come from the run's model.json
(`config`; default: model.json beside the checkpoint, or in its parent folder, where mru-lm's main.py writes it).
A model.json without vocab_size (the repository's config/*/model.json: main.py injects it from the tokenizer) takes
it from wte.weight. Keys saved by a torch.compile'd model (prefix `_orig_mod.`) are accepted. Linear weights are
transposed ([out, in] -> [in, out]); state_matrices_down, the embedding and LayerNorm weights copy as they are; the
xPos buffers position_embedding.{c,s,t,invt} (deterministic tables of the config) are checked for shape and
dropped, as is lm_head.weight, which must equal wte.weight (the original ties them). The checkpoint's step is kept
in the converted config.json as "checkpoint_step".

to_torch(model, out_dir): writes an mru-lm train folder, out_dir/model.json (the config's fields in main.py's
order, as main.py writes it: one line of json.dumps) and out_dir/checkpoints/checkpoint-step-<step>.pt holding
{'step': step, 'model_state_dict': ...} (step: the config's checkpoint_step, 0 for a model trained here) with the
original's keys in the original's order, lm_head.weight stored as the same storage as wte.weight (tied, as
torch.save writes it), and the xPos buffers recomputed (see xpos_buffers: bit-identical to the original's when
torch is importable, which only this direction uses, and then only for these four tables; without torch c differs
by one unit in the last place in about 4 % of its entries, which no forward pass notices). Every parameter written
back is bit-identical to what was read. The state dict's `_metadata` (module versions, unused by these modules) is not
written; torch's load_state_dict does not need it.
"""
import json
import os
import re
from collections import OrderedDict

import numpy as np

import paddle

from ..io import CheckpointError, load_torch_checkpoint, read_json, save_torch_checkpoint
from ..io.atomic import atomic_directory, atomic_write
from ..layers.mru import xpos_tables
from ..models.modeling_utils import ModelFileError, check_weights, linear_weight_names
from ..models.mru import MRUConfig, MRUForCausalLM
from ..models.mru.configuration import MODEL_JSON_FIELDS
from . import build, floating, lazy

MODEL_JSON = "model.json"
STATE_KEY = "model_state_dict"
COMPILE_PREFIX = "_orig_mod."
XPOS_KEYS = tuple(f"position_embedding.{n}" for n in ("c", "s", "t", "invt"))
CHECKPOINT_RE = re.compile(r"checkpoint-step-(\d+)\.pt$")


def _newest_checkpoint(folder):
    found = []
    for d in (os.path.join(folder, "checkpoints"), folder):
        if os.path.isdir(d):
            found += [(int(m.group(1)), os.path.join(d, n)) for n in os.listdir(d) if (m := CHECKPOINT_RE.match(n))]
    if not found:
        raise ModelFileError(f"{folder} holds no mru-lm checkpoint (checkpoints/checkpoint-step-N.pt); pass the "
                             f"checkpoint file as --src")
    return max(found)[1]


def _locate(src, config):
    """(checkpoint path, model.json path) for a checkpoint file or a train folder, and an optional model.json."""
    src = os.fspath(src)
    if os.path.isdir(src):
        checkpoint, folders = _newest_checkpoint(src), [src]
    elif os.path.isfile(src):
        checkpoint = src
        here = os.path.dirname(os.path.abspath(src))
        folders = [here, os.path.dirname(here)]
    else:
        raise ModelFileError(f"{src} does not exist")
    if config is not None:
        config = os.fspath(config)
        if not os.path.isfile(config):
            raise ModelFileError(f"--config {config}: no such file (mru-lm's model.json of the run)")
        return checkpoint, config
    for folder in folders:
        if os.path.isfile(os.path.join(folder, MODEL_JSON)):
            return checkpoint, os.path.join(folder, MODEL_JSON)
    raise ModelFileError(f"no {MODEL_JSON} beside {checkpoint} or in its parent folder: an mru-lm checkpoint does not "
                         f"hold the model's sizes; pass the run's model.json with --config")


def read_model_json(path, vocab_size=None):
    """MRUConfig from an mru-lm model.json; vocab_size (from the embedding) fills a missing field and must match a
    given one. ModelFileError, one line, for anything unusable."""
    data = read_json(path, lambda problem: ModelFileError(f"{path} {problem} (mru-lm's model.json)"))
    unknown = sorted(set(data) - set(MODEL_JSON_FIELDS))
    if unknown:
        raise ModelFileError(f"{path} has field(s) mru-lm's model.json does not have: {', '.join(unknown)}")
    missing = [k for k in MODEL_JSON_FIELDS if k not in data and k != "vocab_size"]
    if missing:
        raise ModelFileError(f"{path} lacks the field(s) {', '.join(missing)} (mru-lm's model.json has "
                             f"{', '.join(MODEL_JSON_FIELDS)})")
    if vocab_size is not None:
        if "vocab_size" in data and data["vocab_size"] != vocab_size:
            raise ModelFileError(f"{path} says vocab_size {data['vocab_size']} but the checkpoint's wte.weight has "
                                 f"{vocab_size} rows")
        data = {**data, "vocab_size": vocab_size}
    elif "vocab_size" not in data:
        raise ModelFileError(f"{path} has no vocab_size")
    try:
        return MRUConfig(**data)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: {err}") from None


def _read_checkpoint(path):
    """(step, state dict with the compile prefix stripped)."""
    try:
        obj = load_torch_checkpoint(path)
    except CheckpointError as err:
        raise ModelFileError(str(err)) from None
    if not isinstance(obj, dict) or STATE_KEY not in obj:
        have = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
        hint = " (a bare state dict? this reads the dict mru-lm's train.py saves)" \
            if isinstance(obj, dict) and any(str(k).endswith("wte.weight") for k in obj) else ""
        raise ModelFileError(f"{path} is not an mru-lm training checkpoint: it has no '{STATE_KEY}' entry (found "
                             f"{have}){hint}")
    sd = obj[STATE_KEY]
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise ModelFileError(f"{path}: '{STATE_KEY}' is not a state dict of tensors")
    out = OrderedDict()
    for key, value in sd.items():
        key = str(key)
        if key.startswith(COMPILE_PREFIX):
            key = key[len(COMPILE_PREFIX):]
        if key in out:
            raise ModelFileError(f"{path}: {key} appears twice (with and without the {COMPILE_PREFIX} prefix)")
        out[key] = value
    floating(out, path, ModelFileError)
    step = obj.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool):
        step = 0
    return step, out


def torch_layout(model):
    """OrderedDict {original key: (shape in the original's layout, transposed?)} of the parameters, in the
    original's state-dict order (the xPos buffers and lm_head.weight are not parameters)."""
    linear = linear_weight_names(model)
    out = OrderedDict()
    for name, param in model.named_parameters():
        shape = list(param.shape)
        out[name] = (shape[::-1], True) if name in linear else (shape, False)
    return out


def read_torch(src, config=None):
    """(config, lazy tensors in Paddle's layout, checkpoint path) of an mru-lm checkpoint (see paddle_lrnn.convert)."""
    path, config_path = _locate(src, config)
    step, sd = _read_checkpoint(path)
    if any(k.startswith("blocks.") for k in sd) and not any(k.startswith("layers.") for k in sd):
        raise ModelFileError(f"{path} is in the layout of mru-lm's 'old' branch (blocks.*), which this converter does "
                             f"not read; it reads the current hybrid network (layers.*, pre_lns.*)")
    if "wte.weight" not in sd:
        raise ModelFileError(f"{path}: the state dict has no wte.weight (found {', '.join(list(sd)[:4])}, ...)")
    cfg = read_model_json(config_path, vocab_size=int(sd["wte.weight"].shape[0]))
    with paddle.LazyGuard():
        model = MRUForCausalLM(cfg)
    layout = torch_layout(model)
    head = sd.pop("lm_head.weight", None)
    if head is not None and (head.shape != sd["wte.weight"].shape or not np.array_equal(head, sd["wte.weight"])):
        raise ModelFileError(f"{path}: lm_head.weight differs from wte.weight; the original ties them")
    xpos_shape = [cfg.max_sequence_length, 1, cfg.key_head_size]
    for key in XPOS_KEYS:
        if key in sd:
            value = sd.pop(key)
            if list(value.shape) != xpos_shape:
                raise ModelFileError(f"{path}: {key} has shape {list(value.shape)}, but {config_path} needs "
                                     f"{xpos_shape} (max_sequence_length, 1, key_size // n_attn_heads)")
    check_weights({k: v.shape for k, v in sd.items()}, {k: s for k, (s, _) in layout.items()}, path, config_path)
    cfg.extra["checkpoint_step"] = step
    return cfg, {name: lazy(sd[name], transpose=transposed) for name, (_, transposed) in layout.items()}, path


def from_torch(src, config=None, dtype=None):
    """An MRUForCausalLM holding the weights of an mru-lm checkpoint (see the module docstring)."""
    cfg, tensors, path = read_torch(src, config)
    return build(MRUForCausalLM, cfg, tensors, path, dtype)


def xpos_buffers(key_head_size, max_sequence_length, use_torch=None):
    """The original's xPos buffers {position_embedding.c/s/t/invt: float32 [L, 1, k]}. With torch importable (or
    use_torch=True) they are computed by torch, as the original computes them, so they are bit-identical to what the
    original code gives on this machine (torch's CPU cos is Intel MKL's vsCos, which is not correctly rounded);
    without torch, by paddle_lrnn.layers.mru.xpos_tables: s, t and invt are the same, c may differ by one unit in
    the last place (in 40 of the fixture's 1024 entries)."""
    if use_torch is None:
        import importlib.util

        use_torch = importlib.util.find_spec("torch") is not None
    if not use_torch:
        return dict(zip(XPOS_KEYS, xpos_tables(key_head_size, 0, max_sequence_length, max_sequence_length)))
    import torch

    k, L = int(key_head_size), int(max_sequence_length)
    pairs = torch.arange(2, k + 2, 2, dtype=torch.float32)
    theta = torch.pow(1 / 10000, pairs / k).repeat_interleave(2)
    alpha = 0.4 * k
    zeta = ((pairs / (k / 2) + alpha) / (1 + alpha)).repeat_interleave(2)
    u = torch.arange(-(L // 2), L - L // 2, dtype=torch.float32).view(-1, 1, 1) / 512
    angle = u * theta.view(1, 1, -1)
    t = zeta.view(1, 1, -1) ** u
    tables = (torch.cos(angle), torch.sin(angle), t, 1 / t)
    return {key: np.ascontiguousarray(x.numpy(), dtype=np.float32) for key, x in zip(XPOS_KEYS, tables)}


def torch_state_dict(model):
    """The original's state dict (OrderedDict of numpy arrays, original order) for `model`."""
    cfg = model.config
    sd = OrderedDict()
    xpos = xpos_buffers(cfg.key_head_size, cfg.max_sequence_length)
    params = dict(model.named_parameters())
    for name, (_, transposed) in torch_layout(model).items():
        if name == "wte.weight":
            sd.update(xpos)
        value = params[name].numpy()
        sd[name] = np.ascontiguousarray(value.T) if transposed else value
    sd["lm_head.weight"] = sd["wte.weight"]  # the same array: one storage in the file, as torch saves a tied weight
    return sd


def to_torch(model, out_dir):
    """Writes `model` as an mru-lm train folder (model.json + checkpoints/checkpoint-step-<step>.pt), atomically:
    the folder appears complete or not at all, replacing an existing one. Returns the checkpoint's path."""
    if not isinstance(model, MRUForCausalLM):
        raise TypeError(f"to_torch needs an MRUForCausalLM, got {type(model).__name__}")
    step = model.config.extra.get("checkpoint_step", 0)
    step = step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0
    out_dir = os.path.abspath(os.fspath(out_dir))
    name = f"checkpoint-step-{step}.pt"
    with atomic_directory(out_dir) as staging:
        with atomic_write(os.path.join(staging, MODEL_JSON), "w") as f:
            f.write(json.dumps(model.config.to_model_json()))
        os.makedirs(os.path.join(staging, "checkpoints"))
        save_torch_checkpoint(os.path.join(staging, "checkpoints", name),
                              {"step": step, STATE_KEY: torch_state_dict(model)})
    return os.path.join(out_dir, "checkpoints", name)
