"""RWKV-v2 (BlinkDL/RWKV-LM, RWKV-v2-RNN) checkpoints <-> RWKV2ForCausalLM.

The original's state dict uses the same parameter names as RWKV2ForCausalLM; Linear weights are transposed
([out, in] in PyTorch, [in, out] in Paddle) and the copy_mask buffer is dropped (it is tril(ones(ctx_len)), so only
its size, the context length, is kept, in the config). The weights keep the checkpoint's dtype unless asked.
"""
import numpy as np
import paddle

from ..io.torch_checkpoint import load_torch_checkpoint, save_torch_checkpoint
from ..models.modeling_utils import ModelFileError, check_weights, linear_weight_names
from ..models.rwkv2 import RWKV2Config, RWKV2ForCausalLM
from . import build, lazy

REQUIRED = ("emb.weight", "ln_out.weight", "head.weight", "head_q.weight", "head_k.weight", "copy_mask",
            "blocks.0.ln1.weight")


def _state_dict(obj, source):
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ModelFileError(f"{source} is not an RWKV-v2 checkpoint: expected a state dict of tensors")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        found = ", ".join(sorted(obj)[:4])
        raise ModelFileError(f"{source} is not an RWKV-v2 checkpoint: it lacks {missing[0]} (it has {found}, ...)")
    return obj


def config_from_state_dict(sd):
    """Reads the hyper-parameters off the tensor shapes: layers, width, vocabulary, ctx_len from copy_mask."""
    n_layer = len({k.split(".")[1] for k in sd if k.startswith("blocks.") and k.endswith(".ln1.weight")})
    vocab_size, n_embd = sd["emb.weight"].shape
    return RWKV2Config(vocab_size=int(vocab_size), n_embd=int(n_embd), n_layer=n_layer,
                       ctx_len=int(sd["copy_mask"].shape[0]), head_qk_dim=int(sd["head_q.weight"].shape[0]),
                       variant="RWKV-ffnPre" if "blocks.0.ffnPre.key.weight" in sd else "RWKV")


def read_torch(path):
    """(config, lazy tensors in Paddle's layout, path) of an original .pth state dict (see paddle_lrnn.convert)."""
    sd = _state_dict(load_torch_checkpoint(path), path)
    config = config_from_state_dict(sd)
    with paddle.LazyGuard():
        model = RWKV2ForCausalLM(config)
    transposed = linear_weight_names(model)
    tensors = {k: lazy(v, transpose=k in transposed) for k, v in sd.items() if k != "copy_mask"}
    check_weights({k: s for k, (_, s, _) in tensors.items()}, {k: p.shape for k, p in model.named_parameters()},
                  path)
    return config, tensors, path


def from_torch(path, dtype=None):
    """An RWKV2ForCausalLM holding the weights of an original .pth state dict (read without torch)."""
    config, tensors, source = read_torch(path)
    return build(RWKV2ForCausalLM, config, tensors, source, dtype)


def to_torch(model, path):
    """Writes the model as the original's state dict (.pth that RWKV-LM's code and torch.load read)."""
    transposed = linear_weight_names(model)
    ctx = model.config.ctx_len
    sd = {"copy_mask": np.tril(np.ones((ctx, ctx), dtype=np.float32))}
    for name, param in model.named_parameters():
        value = param.numpy()
        sd[name] = np.ascontiguousarray(value.T) if name in transposed else value
    save_torch_checkpoint(path, sd)
