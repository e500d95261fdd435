from .configuration import RWKV2Config
from .modeling import RWKV2ForCausalLM

__all__ = ["RWKV2Config", "RWKV2ForCausalLM"]
