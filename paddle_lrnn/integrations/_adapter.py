"""What the PaddleNLP and PaddleFormers integrations share: one config class and one model class per family of
paddle_lrnn.models.auto.FAMILIES, built on the library's own PretrainedConfig / PretrainedModel.

The model class holds the paddle_lrnn model's sub-layers as its own, so its parameter names, state_dict and
safetensors files are paddle_lrnn's exactly (no prefix), and it runs the paddle_lrnn forward. It adds what the
libraries call: forward(input_ids, labels, past_key_values, use_cache, attention_mask) -> CausalLMOutputWithPast
with the loss from labels (already shifted, as the libraries' causal LMs take them: labels[:, t] is the target of
position t, -100 ignored), and the generation hooks that keep decoding O(1) per token on the recurrent state:
prepare_inputs_for_generation (the prompt once, then only the newest token with the state),
update_model_kwargs_for_generation (the state; no growing attention mask) and reorder_cache (beam search: each
state tensor indexed along its own batch axis).

The state is the family's own dict of tensors (past_key_values). Its batch axis differs between tensors (axis 1 for
the per-layer stacks, axis 0 for RWKV-v2's copy-head memory, none for MRU's position counter); reorder_cache finds
each one by comparing the state shapes the model returns for batches of one and two tokens, so any family that
follows the model interface (forward(input_ids, state, use_cache) -> CausalLMOutput(logits, state)) joins unchanged.
"""
import importlib
import os

import numpy as np
import paddle
import paddle.nn.functional as F

from ..io.sharded import INDEX_NAME, WEIGHTS_NAME
from ..models.auto import FAMILIES
from ..models.modeling_utils import CONFIG_NAME, ModelFileError, read_config

IGNORE_INDEX = -100
PICKLED_WEIGHTS_NAME = "model_state.pdparams"  # what PaddleNLP's save_pretrained writes by default


def families():
    """(model_type, paddle_lrnn config class, paddle_lrnn model class) for every registered family."""
    for model_type, (module_name, config_name, model_name) in FAMILIES.items():
        module = importlib.import_module(module_name)
        yield model_type, getattr(module, config_name), getattr(module, model_name)


def build_classes(library, config_base, model_base, output_class, model_extras=None):
    """Classes for every family on a library's bases: returns ({class name: class}, {model_type: model class}).
    `<Family>Config(ConfigMixin, config_base)` and `<Family>ForCausalLM(CausalLMMixin, model_base)` are named as
    paddle_lrnn's classes and belong to the module `library` (which should make them its attributes, so pickle and
    the libraries' class-name lookups find them). model_extras: further attributes of each model class."""
    by_name, by_type = {}, {}
    short = config_base.__module__.split(".")[0]
    for model_type, lrnn_config, lrnn_model in families():
        config_class = type(lrnn_config.__name__, (ConfigMixin, config_base), {
            "__module__": library, "model_type": model_type, "lrnn_config_class": lrnn_config,
            "__doc__": f"paddle_lrnn's {lrnn_config.__name__} as a {short} config: its fields, checked by "
                       f"paddle_lrnn, plus the library's own."})
        model_class = type(lrnn_model.__name__, (CausalLMMixin, model_base), {
            "__module__": library, "config_class": config_class, "lrnn_model_class": lrnn_model,
            "output_class": output_class, **(model_extras or {}),
            "__doc__": f"paddle_lrnn's {lrnn_model.__name__} as a {short} causal LM (paddle_lrnn.integrations)."})
        by_name[config_class.__name__] = config_class
        by_name[model_class.__name__] = model_class
        by_type[model_type] = model_class
    return by_name, by_type


def route_from_pretrained(auto_class, model_classes):
    """Makes the library's auto_class.from_pretrained send a local directory whose config.json has one of our
    model types to that family's class (model_classes: {model_type: class}), before the library's own lookup, which
    tries substrings of the path first (PaddleFormers takes ".../qwen2-hgrn2" for Qwen2) and, in PaddleNLP, has no
    registry at all. Anything else goes to the library unchanged."""
    if getattr(auto_class, "_paddle_lrnn_routed", False):
        return
    library_from_pretrained = auto_class.from_pretrained.__func__

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        directory = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        model_class = model_classes.get(_local_model_type(directory))
        if model_class is not None:
            return model_class.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return library_from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs)

    from_pretrained.__doc__ = library_from_pretrained.__doc__
    auto_class.from_pretrained = classmethod(from_pretrained)
    auto_class._paddle_lrnn_routed = True


def _local_model_type(directory):
    """config.json's model_type of a local model directory, or None (not a directory, no readable config)."""
    if not os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        return None
    try:
        return read_config(directory).get("model_type")
    except ModelFileError:
        return None


class ConfigMixin:
    """The library config with the family's fields as attributes, checked and completed by paddle_lrnn's config class
    (clear errors for bad values; HGRN2's heads resolved as paddle_lrnn resolves them)."""

    lrnn_config_class = None

    def __init__(self, **kwargs):
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in self.lrnn_config_class.defaults}
        lrnn = self.lrnn_config_class(**fields)
        super().__init__(**kwargs)
        for key in self.lrnn_config_class.defaults:
            setattr(self, key, getattr(lrnn, key))

    def to_lrnn_config(self):
        """The paddle_lrnn config of these fields."""
        return self.lrnn_config_class(**{k: getattr(self, k) for k in self.lrnn_config_class.defaults})


class CausalLMMixin:
    lrnn_model_class = None
    output_class = None

    def __init__(self, config, lrnn_model=None):
        super().__init__(config)
        model = self.lrnn_model_class(config.to_lrnn_config()) if lrnn_model is None else lrnn_model
        # The paddle_lrnn model's sub-layers, parameters and buffers become this layer's own (same objects, same
        # names); the model itself is kept unregistered, to run its forward.
        for name, layer in model._sub_layers.items():
            self.add_sublayer(name, layer)
        for name, param in model._parameters.items():
            self.add_parameter(name, param)
        for name, buffer in model._buffers.items():
            self.register_buffer(name, buffer, persistable=name not in model._non_persistable_buffer_names_set)
        self.__dict__["lrnn"] = model
        self.__dict__["_state_batch_axes"] = None

    # --------------------------------------------------------------------------------------------- train / eval
    def train(self):
        super().train()
        self.lrnn.train()
        return self

    def eval(self):
        super().eval()
        self.lrnn.eval()
        return self

    # -------------------------------------------------------------------------------------------------- forward
    def forward(self, input_ids=None, labels=None, past_key_values=None, use_cache=None, attention_mask=None,
                return_dict=None, inputs_embeds=None, position_ids=None):
        """input_ids [B, T]; labels [B, T] (targets of each position, IGNORE_INDEX skipped) gives the mean
        cross-entropy as loss; past_key_values: the state of an earlier call (use_cache=True returns the new one).
        attention_mask [B, T] may only mark padding at the end of a row (a recurrent model reads left to right, so
        right padding changes nothing before it; left padding would). position_ids are ignored (positions are
        implicit in the recurrence)."""
        if inputs_embeds is not None:
            raise ValueError(f"{type(self).__name__} takes input_ids, not inputs_embeds")
        if input_ids is None:
            raise ValueError(f"{type(self).__name__} needs input_ids")
        if attention_mask is not None:
            check_attention_mask(attention_mask, input_ids, allow_right_padding=True)
        out = self.lrnn(input_ids, state=past_key_values, use_cache=bool(use_cache))
        loss = None if labels is None else lm_loss(out.logits, labels)
        if return_dict is False:
            result = (out.logits,) if out.state is None else (out.logits, out.state)
            return result if loss is None else (loss,) + result
        return self.output_class(loss=loss, logits=out.logits, past_key_values=out.state)

    # ----------------------------------------------------------------------------------------------- generation
    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, use_cache=True,
                                      inputs_embeds=None, cache=None, **kwargs):
        """The whole prompt on the first call; afterwards only the newest token, with the state."""
        if inputs_embeds is not None:
            raise ValueError(f"{type(self).__name__}.generate takes input_ids, not inputs_embeds")
        state = past_key_values if past_key_values is not None else cache
        if state is None:
            if attention_mask is not None:
                check_attention_mask(attention_mask, input_ids, allow_right_padding=False)
            return {"input_ids": input_ids, "use_cache": use_cache}
        return {"input_ids": input_ids[:, -1:], "past_key_values": state, "use_cache": use_cache}

    @staticmethod
    def update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=False):
        model_kwargs["past_key_values"] = outputs[1] if isinstance(outputs, tuple) else outputs.past_key_values
        model_kwargs.pop("cache", None)
        # the mask was checked with the prompt; growing it each step would cost O(length) (PaddleNLP: O(length^2))
        model_kwargs["attention_mask"] = None
        return model_kwargs

    def reorder_cache(self, cache, beam_idx):
        """The state of the beams beam_idx picked: every tensor indexed along its batch axis."""
        if cache is None:
            return None
        axes = self.state_batch_axes()
        unknown = sorted(set(cache) - set(axes))
        if unknown:
            raise ValueError(f"{type(self).__name__}: the state has key(s) {unknown} that the model's state for a "
                             f"fresh batch lacks; cannot reorder it for beam search")
        return {k: v if axes[k] is None else paddle.index_select(v, beam_idx, axis=axes[k]) for k, v in cache.items()}

    def state_batch_axes(self):
        """{state key: its batch axis, or None for a tensor shared by the batch}, from the states after one token
        for batches of 1 and 2 (computed once per model)."""
        if self._state_batch_axes is None:
            with paddle.no_grad():  # forward itself: the probe is no call of the model that hooks should see
                one, two = (self.lrnn.forward(paddle.zeros([b, 1], "int64"), use_cache=True).state for b in (1, 2))
            axes = {}
            for key in one:
                differ = [i for i, (a, b) in enumerate(zip(one[key].shape, two[key].shape)) if a != b]
                if len(differ) > 1 or len(one[key].shape) != len(two[key].shape):
                    raise ValueError(f"{type(self).__name__}: state[{key!r}] has shape {list(one[key].shape)} for "
                                     f"batch 1 and {list(two[key].shape)} for batch 2; expected one batch axis")
                axes[key] = differ[0] if differ else None
            self.__dict__["_state_batch_axes"] = axes
        return self._state_batch_axes

    # ---------------------------------------------------------------------------------------------------- files
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, dtype=None, subfolder=None, **kwargs):
        """Loads a model directory written by paddle_lrnn (save_pretrained, a converter, the train tool) or by the
        library's save_pretrained in safetensors, with paddle_lrnn's loader: config.json and model.safetensors or
        its shards, memory-mapped, names and shapes checked, no pickled code run. dtype: "float32", "bfloat16" or
        "float16" (or the paddle dtype) to cast to; None keeps the stored one."""
        refused = sorted(k for k in kwargs if k not in _HARMLESS_LOAD_KWARGS or _HARMLESS_LOAD_KWARGS[k](kwargs[k]))
        if args or refused:
            raise TypeError(f"{cls.__name__}.from_pretrained loads a local model directory (config.json and "
                            f"{WEIGHTS_NAME}); unsupported argument(s): "
                            f"{', '.join(refused) or 'positional ' + repr(args)}. PyTorch checkpoints: convert them "
                            f"with paddle-lrnn-convert (python tools/convert.py in a checkout), which runs no pickled "
                            f"code.")
        directory = os.fspath(pretrained_model_name_or_path)
        if subfolder:
            directory = os.path.join(directory, subfolder)
        if not any(os.path.isfile(os.path.join(directory, n)) for n in (WEIGHTS_NAME, INDEX_NAME)) \
                and os.path.isfile(os.path.join(directory, PICKLED_WEIGHTS_NAME)):
            raise ModelFileError(
                f"{directory} holds its weights only as {PICKLED_WEIGHTS_NAME}, a pickle (loading one can run code), "
                f"which paddle_lrnn does not read. Save with save_pretrained(directory, safe_serialization=True), "
                f"and train with TrainingArguments(unified_checkpoint=True) for safetensors checkpoints.")
        if dtype is not None and not isinstance(dtype, str):
            dtype = str(dtype).rsplit(".", 1)[-1]  # paddle.bfloat16 -> "bfloat16"
        lrnn = cls.lrnn_model_class.from_pretrained(directory, dtype=dtype)
        model = cls(cls.config_class(**read_config(directory)), lrnn_model=lrnn)
        model.eval()
        return model


# from_pretrained keyword arguments the Auto classes pass along, each with a test for a value we cannot honour
_HARMLESS_LOAD_KWARGS = {
    "cache_dir": lambda v: False, "low_cpu_mem_usage": lambda v: False, "use_safetensors": lambda v: v is False,
    "from_hf_hub": bool, "from_aistudio": bool, "from_modelscope": bool, "download_hub": bool,
    "convert_from_torch": bool, "convert_from_hf": bool,
}


def lm_loss(logits, labels):
    """Mean cross-entropy of logits [B, T, V] against labels [B, T] over the positions whose label is not
    IGNORE_INDEX (paddle's mean reduction would divide by every position, ignored ones included)."""
    if list(labels.shape) != list(logits.shape[:2]):
        raise ValueError(f"labels must have the shape of input_ids {list(logits.shape[:2])}, got {list(labels.shape)}")
    labels = labels.reshape([-1]).astype("int64")
    total = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), labels, reduction="sum",
                            ignore_index=IGNORE_INDEX)
    return total / paddle.clip((labels != IGNORE_INDEX).astype(total.dtype).sum(), min=1.0)


def check_attention_mask(mask, input_ids, allow_right_padding):
    """A mask [B, T] of 1/0 (or bool; or PaddleNLP's additive [B, 1, 1, T] with 0 for kept tokens) that keeps every
    token (allow_right_padding: or drops only a tail of each row); one clear error otherwise."""
    m = np.asarray(mask.numpy())
    if m.ndim == 4 and m.shape[1:3] == (1, 1):
        keep = m[:, 0, 0, :] == 0 if m.dtype.kind == "f" else m[:, 0, 0, :].astype(bool)
    elif m.ndim == 2:
        keep = m.astype(bool)
    else:
        raise ValueError(f"attention_mask must be [batch, time], got shape {list(m.shape)}")
    if keep.shape != tuple(input_ids.shape):
        raise ValueError(f"attention_mask has shape {list(keep.shape)}, input_ids {list(input_ids.shape)}")
    if keep.all():
        return
    if not allow_right_padding:
        raise ValueError("attention_mask marks padding in the prompt: a recurrent model would read the padding into "
                         "its state; generate from prompts of equal length without padding (e.g. one per call)")
    if not (np.diff(keep.astype(np.int8), axis=1) <= 0).all():
        raise ValueError("attention_mask marks padding before real tokens: a recurrent model reads every token of a "
                         "row in order, so pad on the right (labels -100 there)")
