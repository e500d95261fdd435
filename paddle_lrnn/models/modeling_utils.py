"""Conventions shared by every model family (PaddleNLP-style): a config saved as config.json, weights saved as
model.safetensors (Paddle parameter names and layouts; sharded with a Hugging Face index when large),
`save_pretrained` / `from_pretrained`, and the forward interface
`model(input_ids, state=None, use_cache=False) -> CausalLMOutput`.

from_pretrained builds the model without initialising its parameters (paddle.LazyGuard) and gives each parameter
the memory-mapped bytes of its tensor in the file (copy-on-write: training the model never changes the file), so
loading costs one copy of the weights, read from disk as they are used, in the dtype they were saved in. A model
stored in bfloat16, float16 or int8 (quantization.py) computes on CPU with float32 activations, its matrices read in
their storage format (layers/linear.py)."""
import collections
import contextlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import paddle
import paddle.nn as nn

from ..io import cast, paddle_name, read_json
from ..io.atomic import atomic_files, atomic_write
from ..io.sharded import INDEX_NAME, WEIGHTS_NAME, load_weights, save_sharded
from ..ops.checks import dims_match, is_tensor
from .quantization import SCALE_SUFFIX, check_quantize, check_quantized_dtypes, make_int8, quantize_int8_, \
    stored_quantization

CONFIG_NAME = "config.json"
DTYPES = ("float32", "bfloat16", "float16")


class ModelFileError(ValueError):
    """A model directory or checkpoint that cannot be used: missing files, another model type, wrong shapes."""


@dataclass
class CausalLMOutput:
    """logits: [B, T, vocab] float32. state: what the next call needs to continue the sequence (None unless
    use_cache=True); pass it back unchanged."""

    logits: paddle.Tensor
    state: Optional[Any] = None


class PretrainedConfig:
    """Base of the family configs. Subclasses set `model_type` and `defaults` (field -> default value) and may
    override `validate`. Unknown fields are an error when passed as arguments; in a config.json they are kept and
    written back, so files from other tools round-trip."""

    model_type = ""
    defaults: dict = {}

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown field(s) {unknown}; known: {sorted(self.defaults)}")
        for key, value in {**self.defaults, **kwargs}.items():
            setattr(self, key, value)
        self.extra = {}
        self.validate()

    def validate(self):
        pass

    def to_dict(self):
        return {"model_type": self.model_type, **self.extra, **{k: getattr(self, k) for k in self.defaults}}

    @classmethod
    def from_dict(cls, data, source="config"):
        model_type = data.get("model_type")
        if model_type != cls.model_type:
            raise ModelFileError(f"{source} has model_type {model_type!r}, expected {cls.model_type!r}")
        fields = {k: v for k, v in data.items() if k in cls.defaults}
        config = cls(**fields)
        config.extra = {k: v for k, v in data.items() if k not in cls.defaults and k != "model_type"}
        return config

    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        with atomic_write(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_pretrained(cls, directory):
        return cls.from_dict(read_config(directory), os.path.join(directory, CONFIG_NAME))

    def __repr__(self):
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"


def read_config(directory):
    """config.json of a model directory as a dict, with clear errors for a missing or malformed file."""
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise ModelFileError(f"{directory} is a file, not a model directory (config.json and model.safetensors)")
        raise ModelFileError(f"model directory {directory} does not exist")
    if not os.path.isfile(path):
        raise ModelFileError(f"{directory} has no {CONFIG_NAME}; expected a directory written by save_pretrained")
    return read_json(path, lambda problem: ModelFileError(f"{path} {problem}"))


def linear_weight_names(model):
    """Names of the parameters that are nn.Linear weights: Paddle stores them [in, out], PyTorch [out, in]."""
    return {f"{name}.weight" for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}


def check_weights(found, expected, source, who="the model"):
    """One clear ModelFileError unless `found` ({name: shape} of a file) holds exactly the weights `expected`
    ({name: shape}) needs; `who` names what needs them ("the model", "the config in config.json", ...)."""
    missing = sorted(k for k in expected if k not in found)
    if missing:
        raise ModelFileError(f"{source} lacks {len(missing)} weight(s) {who} needs, e.g. {missing[:3]}")
    unexpected = sorted(k for k in found if k not in expected)
    if unexpected:
        raise ModelFileError(f"{source} has {len(unexpected)} weight(s) {who} does not have, e.g. {unexpected[:3]}")
    for name, shape in expected.items():
        if list(found[name]) != list(shape):
            raise ModelFileError(f"{source}: weight {name} has shape {list(found[name])}, but {who} needs "
                                 f"{list(shape)}")


def check_dtype(dtype):
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or None: as stored), got {dtype!r}")
    return dtype


def to_paddle(array, dtype=None):
    """A numpy array (uint16 = bfloat16 bits) as a paddle.Tensor that shares its memory, cast first to `dtype`
    when that is given and differs (integer arrays are never cast)."""
    if dtype is not None and paddle_name(array.dtype) in ("float32", "bfloat16", "float16", "float64"):
        array = cast(array, dtype)
    array = np.ascontiguousarray(array)
    if array.size == 0:
        return paddle.zeros(array.shape, paddle_name(array.dtype))
    flat = paddle.base.core.frombuffer(memoryview(array.reshape(-1)), getattr(paddle, paddle_name(array.dtype)))
    return flat.reshape(list(array.shape))


def shape_of(value):
    """Shape of an array or of a (dtype, shape, producer) triple (see paddle_lrnn.io.save_safetensors)."""
    return tuple(value[1]) if isinstance(value, tuple) else tuple(value.shape)


def load_arrays(model, arrays, source, dtype=None, who="the model", progress=None):
    """Gives every parameter of `model` its value from `arrays` ({name: array or (dtype, shape, producer)} in Paddle
    layout) after checking that the names and shapes match exactly (one clear error otherwise, and no parameter
    changed). A parameter takes the array's memory itself, cast to `dtype` if given (None: the array's dtype; int8
    weights and their float32 scales are never cast), so a model built under paddle.LazyGuard holds one copy of
    the weights. `arrays` is consumed (each entry is dropped once used, so that what a cast leaves behind is freed
    at once). `progress(nbytes)` is called per tensor."""
    params = dict(model.named_parameters())
    check_weights({k: shape_of(v) for k, v in arrays.items()}, {k: p.shape for k, p in params.items()}, source,
                  who)
    for name, param in params.items():
        value = arrays.pop(name)
        value = value[2]() if isinstance(value, tuple) else value
        keep = name.endswith("weight" + SCALE_SUFFIX)  # (an int8 weight's scales)
        to_paddle(value, None if keep else dtype)._share_buffer_to(param)
        if progress is not None:
            progress(value.nbytes)


def weights_path(directory):
    """model.safetensors or model.safetensors.index.json of a model directory; ModelFileError if it has neither."""
    for name in (WEIGHTS_NAME, INDEX_NAME):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise ModelFileError(f"{directory} has no {WEIGHTS_NAME}; expected a directory written by save_pretrained")


def progress_bar(total, what, quiet=None):
    """A tqdm bar over bytes on stderr for work on `total` bytes, or a no-op for less than 256 MiB or quiet=True;
    returns update(nbytes) and close()."""
    if quiet or (quiet is None and total < 256 << 20):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


_construction = threading.local()


@contextlib.contextmanager
def skip_init():
    """Models constructed inside skip their own weight initialisation (PretrainedModel.init_weights), for weights
    that are loaded next: RWKV's orthogonal initialisation of a large model takes minutes (a QR decomposition of
    every matrix, the [vocab, n_embd] ones included)."""
    previous = getattr(_construction, "skip_init", False)
    _construction.skip_init = True
    try:
        yield
    finally:
        _construction.skip_init = previous


class PretrainedModel(nn.Layer):
    """Base of the family models: save_pretrained / from_pretrained in the PaddleNLP layout."""

    config_class = PretrainedConfig

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def init_weights(self):
        """The family's own initialisation (_init_weights), unless the model is being built inside skip_init()."""
        if not getattr(_construction, "skip_init", False):
            self._init_weights()

    def state_layout(self):
        """{state key: (batch axis, length axis)} for batching states of separate calls (generation's batched
        decoding): the axis holding the batch rows, or None for an entry the rows share (states can be batched only
        where such entries are equal); and an axis whose length may differ between rows, or None. Along that axis
        shorter rows are padded at the front with zeros, which the model must read as absent (e.g. RWKV-v2's copy-head
        memory: a zero key adds nothing). Default: every key with the batch on axis 1 ([layers, batch, ...])."""
        return collections.defaultdict(lambda: (1, None))

    def output_embedding(self):
        """The Embedding layer that is also the output head (tied weights), or None: what int8 quantization
        quantizes besides the Linear weights (quantization.py)."""
        return None

    def save_pretrained(self, directory, max_shard_size=None):
        """Writes config.json and model.safetensors (or shards of at most `max_shard_size` bytes and their index)
        into `directory`, replacing them or, on any failure (a full disk), none of them; weight files of an earlier
        save that this one does not write are then removed."""
        kw = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        with atomic_files(directory) as staging:
            self.config.save_pretrained(staging)
            written = save_sharded(staging, dict(self.named_parameters()), {"format": "paddle"}, **kw)
        for name in os.listdir(directory):
            if name not in written and (name.startswith("model-") and name.endswith(".safetensors")
                                        or name in (WEIGHTS_NAME, INDEX_NAME)):
                os.remove(os.path.join(directory, name))

    @classmethod
    def from_pretrained(cls, directory, dtype=None, quiet=None, quantize=None):
        """The model saved in `directory`, its parameters memory-mapped from the file in the dtype they were saved
        in, or cast to `dtype` ("float32", "bfloat16", "float16"; int8 weights stay int8). quantize="int8"
        quantizes its matrices after loading (quantization.py; a model saved quantized is recognised by its
        config.json and loads as int8 without it). A progress bar on stderr for large weights unless quiet=True."""
        check_dtype(dtype)
        check_quantize(quantize)
        config = cls.config_class.from_pretrained(directory)
        stored = stored_quantization(config, os.path.join(directory, CONFIG_NAME))
        if stored is not None and quantize is not None:
            raise ValueError(f"{directory} is already quantized to {stored}; load it without quantize")
        path = weights_path(directory)
        arrays = load_weights(path)
        with paddle.LazyGuard(), skip_init():
            model = cls(config)
            if stored is not None:
                make_int8(model)
                check_quantized_dtypes(arrays, model, path)
        bar = progress_bar(sum(a.nbytes for a in arrays.values()), "loading", quiet)
        try:
            load_arrays(model, arrays, path, dtype, progress=bar.update)
        finally:
            bar.close()
        if quantize is not None:
            quantize_int8_(model)
        model.eval()
        return model

    def num_parameters(self):
        return sum(int(np.prod(p.shape)) for p in self.parameters())


@paddle.jit.not_to_static
def check_input_ids(input_ids, vocab_size=None):
    """A 2-D int64/int32 tensor of ids in [0, vocab_size); one clear error otherwise. While paddle.jit.to_static
    traces a model only the rank and dtype can be checked (the ids are not known yet, and the batch and time
    dimensions may be open). vocab_size None leaves the range to the caller (check_id_range: it syncs)."""
    if not is_tensor(input_ids) or input_ids.ndim != 2:
        got = list(input_ids.shape) if is_tensor(input_ids) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a 2-D paddle.Tensor [batch, time], got {got}")
    if input_ids.dtype not in (paddle.int64, paddle.int32):
        raise TypeError(f"input_ids must be int64 or int32, got {input_ids.dtype}")
    if 0 in input_ids.shape:
        raise ValueError(f"input_ids is empty (shape {list(input_ids.shape)}); batch and time must be at least 1")
    if vocab_size is not None:
        check_id_range(input_ids, vocab_size)


@paddle.jit.not_to_static
def check_id_range(input_ids, vocab_size):
    if not paddle.in_dynamic_mode():
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token id {high if high >= vocab_size else low} is outside the vocabulary [0, {vocab_size})")


@paddle.jit.not_to_static
def check_state(state, expected, batch_size):
    """Checks that `state` is the dict an earlier call returned: the keys of `expected` ({key: shape}), each tensor
    with its shape; one clear error otherwise. While tracing, a dimension left open matches anything."""
    if not isinstance(state, dict) or set(state) != set(expected):
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state must be the dict an earlier call returned, with keys {sorted(expected)}; got {have}")
    for key, shape in expected.items():
        if not dims_match(list(state[key].shape), shape):
            raise ValueError(f"state[{key!r}] has shape {list(state[key].shape)}, expected {shape} (layers, batch "
                             f"{batch_size}, ...): was it made for another batch size or model?")
