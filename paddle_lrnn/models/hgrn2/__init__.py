from .configuration import HGRN2Config
from .modeling import HGRN2ForCausalLM

__all__ = ["HGRN2Config", "HGRN2ForCausalLM"]
