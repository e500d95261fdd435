from .configuration import RWKV4Config
from .modeling import RWKV4ForCausalLM

__all__ = ["RWKV4Config", "RWKV4ForCausalLM"]
