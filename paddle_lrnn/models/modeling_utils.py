"""Conventions shared by every model family (PaddleNLP-style): a config saved as config.json, weights saved as
model.safetensors (Paddle parameter names and layouts), `save_pretrained` / `from_pretrained`, and the forward
interface `model(input_ids, state=None, use_cache=False) -> CausalLMOutput`."""
import contextlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import paddle
import paddle.nn as nn

from ..io.atomic import atomic_files, atomic_write
from ..io.safetensors import load_safetensors, save_safetensors
from ..ops._checks import dims_match, is_tensor

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} must hold a JSON object")
    return data


def linear_weight_names(model):
    """Names of the parameters that are nn.Linear weights: Paddle stores them [in, out], PyTorch [out, in]."""
    return {f"{name}.weight" for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}


def load_arrays(model, arrays, source):
    """Sets every parameter of `model` from `arrays` (name -> numpy array in Paddle layout), after checking that
    the names and shapes match exactly; one clear error otherwise, and no parameter is changed."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(arrays))
    unexpected = sorted(set(arrays) - set(params))
    if missing:
        raise ModelFileError(f"{source} lacks {len(missing)} weight(s) the model needs, e.g. {missing[:3]}")
    if unexpected:
        raise ModelFileError(f"{source} has {len(unexpected)} weight(s) the model does not know, e.g. {unexpected[:3]}")
    for name, param in params.items():
        if tuple(arrays[name].shape) != tuple(param.shape):
            raise ModelFileError(f"{source}: weight {name} has shape {list(arrays[name].shape)}, the model expects "
                                 f"{list(param.shape)}")
    for name, param in params.items():
        param.set_value(paddle.to_tensor(np.ascontiguousarray(arrays[name])).astype(param.dtype))


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

    def save_pretrained(self, directory):
        """Writes config.json and model.safetensors into `directory`, replacing both or, on any failure (a full
        disk), neither."""
        arrays = {name: p.numpy() for name, p in self.named_parameters()}
        with atomic_files(directory) as staging:
            self.config.save_pretrained(staging)
            save_safetensors(os.path.join(staging, WEIGHTS_NAME), arrays, metadata={"format": "paddle"})

    @classmethod
    def from_pretrained(cls, directory):
        config = cls.config_class.from_pretrained(directory)
        path = os.path.join(directory, WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise ModelFileError(f"{directory} has no {WEIGHTS_NAME}; expected a directory written by save_pretrained")
        with skip_init():
            model = cls(config)
        load_arrays(model, load_safetensors(path), path)
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
