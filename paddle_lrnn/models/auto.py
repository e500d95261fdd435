"""AutoConfig / AutoModelForCausalLM: pick the family class from config.json's model_type."""
import importlib
import os

from .modeling_utils import CONFIG_NAME, ModelFileError, read_config

# model_type -> (module, config class, model class); modules are imported only when used.
FAMILIES = {
    "rwkv2": ("paddle_lrnn.models.rwkv2", "RWKV2Config", "RWKV2ForCausalLM"),
    "rwkv4": ("paddle_lrnn.models.rwkv4", "RWKV4Config", "RWKV4ForCausalLM"),
    "hgrn2": ("paddle_lrnn.models.hgrn2", "HGRN2Config", "HGRN2ForCausalLM"),
    "mru": ("paddle_lrnn.models.mru", "MRUConfig", "MRUForCausalLM"),
}


def model_class(model_type):
    """The model class of a model_type ("rwkv2", "rwkv4", "hgrn2", "mru")."""
    module_name, _, name = FAMILIES[model_type]
    return getattr(importlib.import_module(module_name), name)


def _family(directory):
    model_type = read_config(directory).get("model_type")
    if model_type not in FAMILIES:
        raise ModelFileError(f"{os.path.join(directory, CONFIG_NAME)} has model_type {model_type!r}; paddle_lrnn "
                             f"knows {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[model_type][0]), FAMILIES[model_type]


class AutoConfig:
    @staticmethod
    def from_pretrained(directory):
        module, (_, config_name, _) = _family(directory)
        return getattr(module, config_name).from_pretrained(directory)


class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(directory, dtype=None, quiet=None, quantize=None):
        module, (_, _, model_name) = _family(directory)
        return getattr(module, model_name).from_pretrained(directory, dtype=dtype, quiet=quiet, quantize=quantize)

    @staticmethod
    def from_config(config):
        for module_name, config_name, model_name in FAMILIES.values():
            module = importlib.import_module(module_name)
            if isinstance(config, getattr(module, config_name)):
                return getattr(module, model_name)(config)
        raise TypeError(f"no model family takes a {type(config).__name__}")
