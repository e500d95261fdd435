"""MRUConfig: the fields of mikayahlevi/mru-lm's model.json (its `hybrid_lm_config` dataclass), same names and
meaning, so a model.json written by mru-lm converts field for field (see paddle_lrnn/convert/mru.py)."""
from ...layers.mru import mru_dims
from ..modeling_utils import PretrainedConfig

LAYER_TYPES = ("mru", "mlp", "attn")
# the order in which mru-lm's main.py writes model.json (vocab_size, injected from the tokenizer, last)
MODEL_JSON_FIELDS = ("embedding_size", "dropout_rate", "n_state_heads", "state_size", "n_attn_heads", "key_size",
                     "value_size", "max_sequence_length", "layers", "vocab_size")


class MRUConfig(PretrainedConfig):
    """Fields (defaults: mru-lm's shakespeare-char model.json, with its 65-character vocabulary):
    embedding_size 384 (E), dropout_rate 0.2 (every dropout site), n_state_heads 6 (h), state_size 384
    (h * o^2: 6 heads of 8 x 8 matrices), n_attn_heads 6, key_size 384, value_size 384 (attention layers only; xPos
    needs an even key_size / n_attn_heads, checked always as the original builds xPos always),
    max_sequence_length 1024 (xPos table length and the attention window), layers (the ordered layer types,
    "mru", "mlp" or "attn"; default 6 x ["mru", "mlp"]), vocab_size 65.

    Checks, as the original's constructors make them (MRU ones only with an "mru" layer, attention ones only with an
    "attn" layer): state_size % n_state_heads == 0, state_size / n_state_heads a perfect square o^2,
    embedding_size % o == 0, plus embedding_size % (o * n_state_heads) == 0 (the readout needs it; the original does
    not check it and fails in its first forward); key_size and value_size divisible by n_attn_heads."""

    model_type = "mru"
    defaults = dict(
        embedding_size=384, dropout_rate=0.2, n_state_heads=6, state_size=384, n_attn_heads=6, key_size=384,
        value_size=384, max_sequence_length=1024, layers=["mru", "mlp"] * 6, vocab_size=65,
    )

    def __init__(self, **kwargs):
        if "layers" in kwargs and isinstance(kwargs["layers"], tuple):
            kwargs["layers"] = list(kwargs["layers"])
        super().__init__(**kwargs)

    def validate(self):
        for key in ("embedding_size", "vocab_size", "n_attn_heads", "key_size", "value_size", "max_sequence_length",
                    "n_state_heads", "state_size"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"MRUConfig.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.dropout_rate, (int, float)) or isinstance(self.dropout_rate, bool) \
                or not 0 <= self.dropout_rate < 1:
            raise ValueError(f"MRUConfig.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        layers = self.layers
        if not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers):
            raise ValueError(f"MRUConfig.layers must be a non-empty list of layer types ({', '.join(LAYER_TYPES)}), "
                             f"got {layers!r}")
        unknown = sorted({x for x in layers if x not in LAYER_TYPES})
        if unknown:
            raise ValueError(f"MRUConfig.layers has unknown layer type(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(LAYER_TYPES)}")
        if "mru" in layers:
            try:
                mru_dims(self.embedding_size, self.n_state_heads, self.state_size)
            except ValueError as err:
                raise ValueError(f"MRUConfig: {err}") from None
        if (self.key_size // self.n_attn_heads) % 2:
            raise ValueError(f"MRUConfig: the key head size key_size // n_attn_heads = {self.key_size} // "
                             f"{self.n_attn_heads} = {self.key_size // self.n_attn_heads} must be even (xPos)")
        if "attn" in layers:
            for key in ("key_size", "value_size"):
                if getattr(self, key) % self.n_attn_heads:
                    raise ValueError(f"MRUConfig.{key} {getattr(self, key)} must be divisible by n_attn_heads "
                                     f"{self.n_attn_heads}")

    @property
    def n_layers(self):
        """len(layers): what the original's init scales by (every entry counts, mru and mlp alike)."""
        return len(self.layers)

    @property
    def state_order(self):
        """o, the side of each head's state matrix."""
        return mru_dims(self.embedding_size, self.n_state_heads, self.state_size)[0]

    @property
    def key_head_size(self):
        return self.key_size // self.n_attn_heads

    @property
    def value_head_size(self):
        return self.value_size // self.n_attn_heads

    def to_model_json(self):
        """The fields as mru-lm's model.json holds them, in its order."""
        return {k: getattr(self, k) for k in MODEL_JSON_FIELDS}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
