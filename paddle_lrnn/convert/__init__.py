"""Converters between the original PyTorch checkpoints and paddle_lrnn models, one module per family, both ways.
Every reader is safe: no code from a checkpoint is ever executed (see paddle_lrnn.io).

Each family module has read_torch(src, ...) -> (config, tensors, source): the checkpoint's tensors in Paddle's
names and layouts as `lazy` triples (dtype, shape, producer), every name and shape already checked against the
config, nothing read yet (the files are memory-mapped); from_torch(src, ...) -> model; to_torch(model, out).
`convert` streams: each tensor is produced, cast if asked, written and dropped before the next, so a conversion
holds about one tensor in memory besides the mapped pages of the one being read."""
import importlib
import os

import numpy as np

from ..io import cast, paddle_name
from ..io._dtypes import numpy_dtype
from ..io.atomic import atomic_directory
from ..io.sharded import MAX_SHARD_SIZE, save_sharded

FAMILIES = ("rwkv2", "rwkv4", "hgrn2", "mru")
TAKES_CONFIG = ("mru",)  # families whose checkpoints lack the model's sizes: they come from a separate file
FLOATS = ("float32", "bfloat16", "float16", "float64")


def converter(family):
    """The module converting `family` checkpoints: read_torch, from_torch(path, ...) -> model, to_torch(model, path)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown --model {family!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{family}")


def lazy(array, transpose=False, shape=None):
    """(dtype, shape, producer) of `array` in Paddle's layout: transposed, or reshaped to `shape`. The producer makes
    the contiguous array when called, once: it then lets go of `array`, so that the pages of a memory-mapped file it
    read leave memory with the result."""
    shape = tuple(array.shape[::-1] if transpose else (shape or array.shape))
    held = [array]

    def produce():
        source = held.pop()
        return np.ascontiguousarray(source.T if transpose else source).reshape(shape)

    return paddle_name(array.dtype), shape, produce


def cast_lazy(tensors, dtype):
    """The floating-point triples of `tensors` made to produce `dtype` (None: unchanged)."""
    if dtype is None:
        return tensors
    return {k: (dtype, s, lambda p=p: cast(p(), dtype)) if d in FLOATS else (d, s, p)
            for k, (d, s, p) in tensors.items()}


def floating(arrays, source, error):
    """`arrays` unless one is not floating point (a checkpoint's weights are): error(message) then."""
    for key, value in arrays.items():
        if paddle_name(value.dtype) not in FLOATS:
            raise error(f"{source}: weight {key} has dtype {value.dtype}, expected a floating-point tensor")
    return arrays


def quantize_tensors(family, config, tensors):
    """The triples of a conversion to `config` with its matrices quantized to int8 (the layers
    paddle_lrnn.models.quantization names, found on a model built without memory), and the quantization recorded in
    config."""
    import paddle

    from ..layers.linear import Embedding
    from ..models.auto import model_class
    from ..models.modeling_utils import skip_init
    from ..models.quantization import CONFIG_KEY, quantize_lazy, quantized_layers

    with paddle.LazyGuard(), skip_init():
        model = model_class(family)(config)
    tensors = quantize_lazy(tensors, {name: isinstance(layer, Embedding)
                                      for name, layer in quantized_layers(model).items()})
    config.extra[CONFIG_KEY] = "int8"
    return tensors


def build(model_class, config, tensors, source, dtype=None, who="the model"):
    """A `model_class` holding `tensors` (Paddle names and layouts), built without initialising its parameters."""
    import paddle

    from ..models.modeling_utils import check_dtype, load_arrays, skip_init

    check_dtype(dtype)
    with paddle.LazyGuard(), skip_init():
        model = model_class(config)
    load_arrays(model, tensors, source, dtype, who)
    model.eval()
    return model


def convert(family, src, out, *, to="paddle", vocab=None, config=None, dtype=None, quantize=None, overwrite=False,
            quiet=None, max_shard_size=MAX_SHARD_SIZE, log=print):
    """What tools/convert.py does. to="paddle": read the original checkpoint `src` and write a model directory `out`
    (config.json, the weights as model.safetensors or shards of at most `max_shard_size` bytes with an index, and
    the vocabulary if `vocab` names one), in the checkpoint's dtype or `dtype` ("float32", "bfloat16", "float16").
    to="torch": read the model directory `src` and write the original's checkpoint `out` (a file for rwkv2, a
    directory for hgrn2, an mru-lm train folder with model.json and checkpoints/ for mru). `config`: the original's
    model config file, for the families whose checkpoints do not hold the model's sizes (mru: mru-lm's model.json;
    default: the one beside the checkpoint). quantize="int8" (to="paddle" only) stores the matrices as int8 with
    per-channel scales (paddle_lrnn.models.quantization), quantized tensor by tensor as they stream. Everything is
    checked before anything is written, and the output appears whole or not at all; an existing output is kept
    unless overwrite=True. A progress bar over bytes goes to stderr for large checkpoints unless quiet=True."""
    from ..models import AutoModelForCausalLM
    from ..models.modeling_utils import check_dtype, progress_bar
    from ..models.quantization import check_quantize

    module = converter(family)
    check_dtype(dtype)
    check_quantize(quantize)
    if quantize is not None and to != "paddle":
        raise ValueError("--quantize applies to conversions to paddle (the originals have no int8 weights)")
    if config is not None and (family not in TAKES_CONFIG or to != "paddle"):
        raise ValueError(f"--config is read only with --model {' or '.join(TAKES_CONFIG)} when converting to paddle "
                         f"(the original's model config, e.g. mru-lm's model.json)")
    if not os.path.exists(src):
        raise FileNotFoundError(f"--src {src} does not exist")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"--out {out} already exists; choose another path or pass --overwrite")
    if to == "torch":
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, quiet=quiet)
        if model.config.model_type != family:
            raise ValueError(f"{src} holds a {model.config.model_type} model, not {family}")
        from ..models.quantization import CONFIG_KEY

        if model.config.extra.get(CONFIG_KEY):
            raise ValueError(f"{src} is quantized to int8, which the original cannot load; convert the original "
                             f"checkpoint instead")
        module.to_torch(model, out)
        log(f"wrote {out} ({model.num_parameters():,} parameters)")
        return out
    if to != "paddle":
        raise ValueError(f"--to must be paddle or torch, got {to!r}")
    model_config, tensors, _ = module.read_torch(src, config=config) if family in TAKES_CONFIG else \
        module.read_torch(src)
    tensors = cast_lazy(tensors, dtype)
    if quantize is not None:
        tensors = quantize_tensors(family, model_config, tensors)
    from ..data import checkpoint_vocab

    tokenizer = checkpoint_vocab(src, vocab, model_config.vocab_size)  # --vocab, or the files beside the checkpoint
    sizes = {k: int(np.prod(s, dtype=np.int64)) for k, (_, s, _) in tensors.items()}
    total = sum(sizes[k] * numpy_dtype(d).itemsize for k, (d, _, _) in tensors.items())
    bar = progress_bar(total, "converting", quiet)

    def tracked(produce):
        value = produce()
        bar.update(value.nbytes)
        return value

    try:
        with atomic_directory(out) as staging:
            model_config.save_pretrained(staging)
            save_sharded(staging, {k: (d, s, lambda p=p: tracked(p)) for k, (d, s, p) in tensors.items()},
                         {"format": "paddle"}, max_shard_size)
            if tokenizer is not None:
                tokenizer.save(staging)
    finally:
        bar.close()
    dtypes = sorted({d for d, _, _ in tensors.values()})
    from ..models.auto import FAMILIES as MODEL_CLASSES

    log(f"converted {src} -> {out}: {MODEL_CLASSES[family][2]}, {sum(sizes.values()):,} parameters in "
        f"{'/'.join(dtypes)}" + ("" if tokenizer is None else f", vocabulary of {tokenizer.vocab_size} "
                                                             f"{tokenizer.unit}s"))
    return out
