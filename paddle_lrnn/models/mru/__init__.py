from .configuration import LAYER_TYPES, MRUConfig
from .modeling import MRUForCausalLM

__all__ = ["LAYER_TYPES", "MRUConfig", "MRUForCausalLM"]
