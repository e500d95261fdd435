"""Model families (config + model per family) and the Auto classes that pick one from config.json."""
from .auto import FAMILIES, AutoConfig, AutoModelForCausalLM
from .modeling_utils import CausalLMOutput, ModelFileError, PretrainedConfig, PretrainedModel

__all__ = ["FAMILIES", "AutoConfig", "AutoModelForCausalLM", "CausalLMOutput", "ModelFileError", "PretrainedConfig",
           "PretrainedModel"]
