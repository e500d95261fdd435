"""int8 weight-only quantization of a model, at conversion (`paddle-lrnn-convert --quantize int8`) or at load
(`from_pretrained(dir, quantize="int8")`); both give the same bits (ops.quantize_int8 is exact float32 arithmetic).

What is quantized: the matrices a decoding step streams, i.e. every Linear weight ([in, out], one float32 scale per
output column) and an embedding that is also the output head (tied embeddings: MRU, HGRN2 with
tie_word_embeddings; one scale per row, i.e. per vocabulary entry). Everything else keeps its dtype: an embedding that
is only looked up is read one row per token, and norms, mixes and decays are small.

Files: the int8 weight under its own name and its scales under NAME_scale (e.g. `blocks.0.att.key.weight` and
`blocks.0.att.key.weight_scale`), in the same safetensors file(s), and "quantization": "int8" in config.json, which
from_pretrained recognises.
"""
QUANTIZATIONS = ("int8",)
CONFIG_KEY = "quantization"
SCALE_SUFFIX = "_scale"


def check_quantize(quantize):
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} (or None: as stored), got {quantize!r}")
    return quantize


def stored_quantization(config, source):
    """The quantization a model's config.json records (None or "int8"); an unknown one is a ModelFileError."""
    from .modeling_utils import ModelFileError

    value = config.extra.get(CONFIG_KEY)
    if value is not None and value not in QUANTIZATIONS:
        raise ModelFileError(f"{source} names the quantization {value!r}; paddle_lrnn knows "
                             f"{', '.join(QUANTIZATIONS)}")
    return value


def quantized_layers(model):
    """{weight's parameter name: layer} of the layers whose weights int8 quantization stores as int8: every Linear,
    and the embedding that is the output head, if the model has one (model.output_embedding())."""
    from ..layers.linear import Embedding, weight_only_layers

    head = model.output_embedding()
    return {name: layer for name, layer in weight_only_layers(model).items()
            if not isinstance(layer, Embedding) or layer is head}


def make_int8(model):
    """Turns the quantized layers of a model built under paddle.LazyGuard into their int8 form (empty int8 weights and
    scales of the right shapes, for the file's values to be shared into) and records the quantization."""
    for layer in quantized_layers(model).values():
        layer.to_int8()
    model.config.extra[CONFIG_KEY] = "int8"


def quantize_int8_(model):
    """Quantizes a loaded model's weights in place (see the module docstring); returns the model."""
    make_int8(model)
    if hasattr(model, "_fused_weights"):
        model._fused_weights = None  # (the fused steps' list held the old parameters)
    return model


def check_quantized_dtypes(arrays, model, source):
    """One clear error unless every quantized weight of `arrays` ({name: array or (dtype, shape, producer)}) is int8
    and every scale float32."""
    from ..io import paddle_name
    from .modeling_utils import ModelFileError

    for name in quantized_layers(model):
        for key, want in ((name, "int8"), (name + SCALE_SUFFIX, "float32")):
            value = arrays.get(key)
            have = value[0] if isinstance(value, tuple) else paddle_name(value.dtype) if value is not None else None
            if have is not None and have != want:
                raise ModelFileError(f"{source}: {key} has dtype {have}, but config.json says the model is "
                                     f"quantized to int8 ({key} must be {want})")


def quantize_array(array, per_row=False):
    """(q int8, scale float32) of a float32/bfloat16/float16 numpy array [K, N] (bfloat16 as uint16 bits):
    layers.linear.quantize_weight's, as numpy arrays."""
    from ..layers.linear import quantize_weight
    from .modeling_utils import to_paddle

    q, scale = quantize_weight(to_paddle(array), per_row)
    return q.numpy(), scale.numpy()


def quantize_lazy(tensors, per_row):
    """The (dtype, shape, producer) triples of a conversion with the weights named in `per_row` ({name: whether its
    scales are per row}) quantized: each becomes int8, followed by its NAME_scale, whose producer returns the
    scales the weight's producer made (the safetensors writer calls producers in this order), so that no int8
    weight is held beyond its own writing."""
    out = {}
    for name, (dtype, shape, produce) in tensors.items():
        if name not in per_row:
            out[name] = (dtype, shape, produce)
            continue
        kept = {}

        def weight(produce=produce, row=per_row[name], kept=kept):
            q, kept["scale"] = quantize_array(produce(), row)
            return q

        out[name] = ("int8", shape, weight)
        out[name + SCALE_SUFFIX] = ("float32", (shape[0] if per_row[name] else shape[1],),
                                    lambda kept=kept: kept.pop("scale"))
    return out
