"""paddle_lrnn models in PaddleNLP 3.0.0b4. Importing this module registers every family with PaddleNLP's
AutoConfig and AutoModelForCausalLM and defines the classes (RWKV2ForCausalLM, HGRN2Config, ...) as its attributes:

    import paddle_lrnn.integrations.paddlenlp
    from paddlenlp.transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("out/hgrn2")        # a paddle_lrnn model directory
    ids, scores = model.generate(prompt_ids, max_new_tokens=50, decode_strategy="greedy_search")
    model.save_pretrained("out/hgrn2-tuned", safe_serialization=True)  # loads back in paddle_lrnn

Install: pip install "paddle_lrnn[paddlenlp]". PaddleNLP's save_pretrained writes a pickle (model_state.pdparams)
unless given safe_serialization=True, and its Trainer does unless TrainingArguments(unified_checkpoint=True);
paddle_lrnn reads only the safetensors files.

AutoConfig is registered with AutoConfig.register. PaddleNLP's AutoModelForCausalLM has no registration API (it picks
a class from a fixed table of PaddleNLP's own modules, by substrings of config.json's "architectures" or of the
path), so its from_pretrained and from_config are wrapped: a directory or config whose model_type is a paddle_lrnn
family goes to that family's class, anything else to PaddleNLP unchanged.
"""
from ._adapter import build_classes, route_from_pretrained

try:
    from paddlenlp.transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PretrainedModel
    from paddlenlp.transformers.model_outputs import CausalLMOutputWithPast
except ImportError as err:
    raise ImportError(f"paddle_lrnn.integrations.paddlenlp needs PaddleNLP: pip install \"paddle_lrnn[paddlenlp]\" "
                      f"({err})", name=err.name) from err

_classes, MODEL_CLASSES = build_classes(__name__, PretrainedConfig, PretrainedModel, CausalLMOutputWithPast)
globals().update(_classes)
__all__ = ["MODEL_CLASSES", *_classes]


def _register():
    for model_type, model_class in MODEL_CLASSES.items():
        AutoConfig.register(model_type, model_class.config_class, exist_ok=True)
    route_from_pretrained(AutoModelForCausalLM, MODEL_CLASSES)
    if getattr(AutoModelForCausalLM, "_paddle_lrnn_from_config", False):
        return
    library_from_config = AutoModelForCausalLM.from_config.__func__

    def from_config(cls, config, **kwargs):
        model_class = MODEL_CLASSES.get(getattr(config, "model_type", None))
        if model_class is not None and isinstance(config, model_class.config_class):
            return model_class.from_config(config, **kwargs)
        return library_from_config(cls, config, **kwargs)

    AutoModelForCausalLM.from_config = classmethod(from_config)
    AutoModelForCausalLM._paddle_lrnn_from_config = True


_register()
