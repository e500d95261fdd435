"""Converters between the original PyTorch checkpoints and paddle_lrnn models, one module per family, both ways.
Every reader is safe: no code from a checkpoint is ever executed (see paddle_lrnn.io)."""
import importlib
import os

from ..io.atomic import atomic_directory

FAMILIES = ("rwkv2", "rwkv4", "hgrn2", "mru")
TAKES_CONFIG = ("mru",)  # families whose checkpoints lack the model's sizes: they come from a separate file


def converter(family):
    """The module converting `family` checkpoints: from_torch(path, ...) -> model, to_torch(model, path)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown --model {family!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{family}")


def convert(family, src, out, *, to="paddle", vocab=None, config=None, overwrite=False, log=print):
    """What tools/convert.py does. to="paddle": read the original checkpoint `src` and write a model directory `out`
    (config.json, model.safetensors, and the vocabulary if `vocab` names one). to="torch": read the model directory
    `src` and write the original's checkpoint `out` (a file for rwkv2, a directory for hgrn2, an mru-lm train folder
    with model.json and checkpoints/ for mru). `config`: the original's model config file, for the families whose
    checkpoints do not hold the model's sizes (mru: mru-lm's model.json; default: the one beside the checkpoint).
    Everything is read and checked before anything is written, and the output appears whole or not at all; an
    existing output is kept unless overwrite=True."""
    from ..models import AutoModelForCausalLM

    module = converter(family)
    if config is not None and (family not in TAKES_CONFIG or to != "paddle"):
        raise ValueError(f"--config is read only with --model {' or '.join(TAKES_CONFIG)} when converting to paddle "
                         f"(the original's model config, e.g. mru-lm's model.json)")
    if not os.path.exists(src):
        raise FileNotFoundError(f"--src {src} does not exist")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"--out {out} already exists; choose another path or pass --overwrite")
    if to == "torch":
        model = AutoModelForCausalLM.from_pretrained(src)
        if model.config.model_type != family:
            raise ValueError(f"{src} holds a {model.config.model_type} model, not {family}")
        module.to_torch(model, out)
        log(f"wrote {out} ({model.num_parameters():,} parameters)")
        return out
    if to != "paddle":
        raise ValueError(f"--to must be paddle or torch, got {to!r}")
    model = module.from_torch(src, config=config) if family in TAKES_CONFIG else module.from_torch(src)
    from ..data import checkpoint_vocab

    tokenizer = checkpoint_vocab(src, vocab, model.config.vocab_size)  # --vocab, or the files beside the checkpoint
    with atomic_directory(out) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save(staging)
    log(f"converted {src} -> {out}: {type(model).__name__}, {model.num_parameters():,} parameters"
        + ("" if tokenizer is None else f", vocabulary of {tokenizer.vocab_size} {tokenizer.unit}s"))
    return out
