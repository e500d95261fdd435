"""paddle_lrnn models in PaddleFormers 1.2.0. Importing this module registers every family with PaddleFormers'
AutoConfig and AutoModelForCausalLM (their register methods) and defines the classes (RWKV2ForCausalLM,
HGRN2Config, ...) as its attributes; AutoModelForCausalLM.from_pretrained sends a paddle_lrnn directory to its
family before PaddleFormers guesses a class from substrings of the path:

    import paddle_lrnn.integrations.paddleformers
    from paddleformers.transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("out/hgrn2")        # a paddle_lrnn model directory
    ids, scores = model.generate(prompt_ids, max_new_tokens=50, decode_strategy="greedy_search")
    model.save_pretrained("out/hgrn2-tuned")                          # loads back in paddle_lrnn

Install: pip install "paddle_lrnn[paddleformers]". PaddleFormers' save_pretrained writes safetensors through its
"AoA" conversion rules; a family's rules are the identity (the files keep paddle_lrnn's names and Paddle layouts).
Its Trainer's default checkpoint format (flex_checkpoint) resumes only under paddle.distributed; in a single process
use TrainingArguments(save_checkpoint_format="unified_checkpoint", load_checkpoint_format="unified_checkpoint")
(safetensors, which paddle_lrnn also reads). Importing PaddleFormers patches some Paddle functions unless
FLAGS_enable_paddleformers_monkey_patch=0 is set; the models work either way.
"""
from ._adapter import build_classes, route_from_pretrained

try:
    from paddleformers.transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PretrainedModel
    from paddleformers.transformers.model_outputs import CausalLMOutputWithPast
except ImportError as err:
    raise ImportError(f"paddle_lrnn.integrations.paddleformers needs PaddleFormers: pip install "
                      f"\"paddle_lrnn[paddleformers]\" ({err})", name=err.name) from err


def _identity_aoa_config(cls, config):
    """PaddleFormers' save_pretrained maps parameter names and layouts through these rules: none (kept as they are)."""
    return {"aoa_statements": []}


_classes, MODEL_CLASSES = build_classes(
    __name__, PretrainedConfig, PretrainedModel, CausalLMOutputWithPast,
    {"_gen_aoa_config": classmethod(_identity_aoa_config), "_gen_inv_aoa_config": classmethod(_identity_aoa_config)})
globals().update(_classes)
__all__ = ["MODEL_CLASSES", *_classes]

for _model_type, _model_class in MODEL_CLASSES.items():
    AutoConfig.register(_model_type, _model_class.config_class, exist_ok=True)
    AutoModelForCausalLM.register(_model_class.config_class, _model_class, exist_ok=True)
# The registry is consulted only after the path's substrings ("qwen2", "llama", ...) and config.json's
# "architectures" have found nothing; a paddle_lrnn directory goes to its family first.
route_from_pretrained(AutoModelForCausalLM, MODEL_CLASSES)
