"""RWKV-4 checkpoints (BlinkDL/RWKV-LM RWKV-v4 / RWKV-v4neo: the released Pile, Raven and World .pth files, in
bfloat16, float16 or float32) <-> RWKV4ForCausalLM.

The released files are plain state dicts whose names are RWKV4ForCausalLM's parameter names. Linear weights are
transposed ([out, in] in PyTorch, [in, out] in Paddle); the time_* vectors are reshaped to the model's shapes (the
original's RNN runner squeezes them the same way, so [C], [C, 1] and [1, 1, C] are all accepted). Everything else
is read off the names and shapes: n_layer (the blocks), n_embd and vocab_size (emb.weight), the "RWKV-ffnPre" variant
(blocks.0.ffnPre), dim_att and dim_ffn (the key matrices). The training length ctx_len is not in the file: it comes
from a "ctx<N>" in the file name (e.g. RWKV-4-Pile-14B-20230313-ctx8192-test1050.pth), else 1024, the length the
Pile models were trained at; the model runs any length regardless. The weights keep the checkpoint's dtype unless
asked.
"""
import os
import re

import numpy as np
import paddle

from ..io.torch_checkpoint import load_torch_checkpoint, save_torch_checkpoint
from ..models.modeling_utils import ModelFileError, check_weights, linear_weight_names, skip_init
from ..models.rwkv4 import RWKV4Config, RWKV4ForCausalLM
from . import build, floating, lazy

REQUIRED = ("emb.weight", "blocks.0.ln0.weight", "blocks.0.ln1.weight", "blocks.0.ffn.key.weight",
            "ln_out.weight", "head.weight")
DEFAULT_CTX_LEN = 1024


def _check_generation(sd, source):
    """One clear error for a checkpoint of another RWKV generation or an option RWKV4ForCausalLM lacks."""
    if "blocks.0.att.time_mix" in sd or "copy_mask" in sd:
        raise ModelFileError(f"{source} is an RWKV-v2 checkpoint (it has "
                             f"{'blocks.0.att.time_mix' if 'blocks.0.att.time_mix' in sd else 'copy_mask'}, RWKV-4 has "
                             f"time_mix_k/v/r and no copy head): convert it with --model rwkv2")
    later = [k for k in sd if re.match(r"blocks\.\d+\.att\.(ln_x|gate|time_faaaa|time_maa|time_decay_w)", k)]
    if later:
        raise ModelFileError(f"{source} is not an RWKV-4 checkpoint: it has {later[0]}, a tensor of RWKV-5 and later "
                             f"(World v5/v6 models), which paddle_lrnn does not implement")
    missing = [k for k in REQUIRED if k not in sd]
    if missing:
        found = ", ".join(sorted(sd)[:4])
        raise ModelFileError(f"{source} is not an RWKV-4 checkpoint: it lacks {missing[0]} (it has {found}, ...)")
    for key, option in (("head_q.weight", "the head_qk copy head (RWKV_HEAD_QK_DIM > 0)"),
                        ("blocks.0.pos_emb_x", "a position embedding (my_pos_emb > 0)")):
        if key in sd:
            raise ModelFileError(f"{source} uses {option}: it has {key}, which RWKV4ForCausalLM does not implement")


def _state_dict(obj, source):
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ModelFileError(f"{source} is not an RWKV-4 checkpoint: expected a state dict of tensors")
    _check_generation(obj, source)
    return floating(obj, source, ModelFileError)


def config_from_state_dict(sd, ctx_len=DEFAULT_CTX_LEN):
    """Reads the hyper-parameters off the names and shapes (see the module docstring)."""
    layers = sorted({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.ln1\.weight$", k)] if m})
    if layers != list(range(len(layers))):
        raise ModelFileError(f"the checkpoint's blocks are numbered {layers[:8]}..., expected 0, 1, 2, ...")
    vocab_size, n_embd = (int(d) for d in sd["emb.weight"].shape)
    ffn_pre = "blocks.0.ffnPre.key.weight" in sd
    att_block = 1 if ffn_pre else 0
    att_key = sd.get(f"blocks.{att_block}.att.key.weight")
    dim_att = int(att_key.shape[0]) if att_key is not None and att_key.ndim == 2 else n_embd
    dim_ffn = int(sd["blocks.0.ffn.key.weight"].shape[0])
    return RWKV4Config(vocab_size=vocab_size, n_embd=n_embd, n_layer=len(layers), ctx_len=ctx_len,
                       variant="RWKV-ffnPre" if ffn_pre else "RWKV", dim_att=None if dim_att == n_embd else dim_att,
                       dim_ffn=None if dim_ffn == 4 * n_embd else dim_ffn)


def ctx_len_from_name(path):
    match = re.search(r"ctx(\d+)", os.path.basename(os.fspath(path)))
    return int(match.group(1)) if match and int(match.group(1)) > 0 else DEFAULT_CTX_LEN


def read_torch(path):
    """(config, lazy tensors in Paddle's layout, path) of an original .pth state dict (see paddle_lrnn.convert)."""
    sd = _state_dict(load_torch_checkpoint(path), path)
    config = config_from_state_dict(sd, ctx_len_from_name(path))
    with paddle.LazyGuard(), skip_init():
        model = RWKV4ForCausalLM(config)
    transposed = linear_weight_names(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    tensors = {}
    for key, value in sd.items():
        if ".time_" in key and key in shapes and value.size == int(np.prod(shapes[key])):
            tensors[key] = lazy(value, shape=shapes[key])  # [C], [C, 1] or [1, 1, C] as the model holds it
        else:
            tensors[key] = lazy(value, transpose=key in transposed and value.ndim == 2)
    check_weights({k: s for k, (_, s, _) in tensors.items()}, shapes, path)
    return config, tensors, path


def from_torch(path, dtype=None):
    """An RWKV4ForCausalLM holding the weights of an original .pth state dict (read without torch), in the file's
    dtype or `dtype` ("float32" to run on CPU, whose Paddle has no 16-bit matrix product)."""
    config, tensors, source = read_torch(path)
    return build(RWKV4ForCausalLM, config, tensors, source, dtype)


def to_torch(model, path):
    """Writes the model as the original's state dict in the model's dtype: a .pth that RWKV-LM's RWKV_RNN and
    torch.load read, with the released files' shapes (time_decay and time_first [C], time_mix_* [1, 1, C]) and key
    order."""
    transposed = linear_weight_names(model)
    sd = {}
    for name, param in model.named_parameters():
        value = param.numpy()
        sd[name] = np.ascontiguousarray(value.T) if name in transposed else value
    save_torch_checkpoint(path, sd)
