"""RWKV4Config: the hyper-parameters of BlinkDL's RWKV-4 (defaults: the layout of the released RWKV-4-Pile-169M)."""
from ..modeling_utils import PretrainedConfig


class RWKV4Config(PretrainedConfig):
    """vocab_size, n_embd, n_layer, ctx_len as the original (ctx_len: the training length, which the model itself
    does not need: it runs any length in every mode); variant "RWKV" or "RWKV-ffnPre" (the original's model_type:
    in "RWKV-ffnPre" block 0 has a second channel-mix `ffnPre` where the time-mix would be); dim_att and dim_ffn
    (RWKV-v4neo's names): the width of the time-mix's k, v, r and of the channel-mix's hidden layer, None for
    n_embd and 4 * n_embd as in every released RWKV-4."""

    model_type = "rwkv4"
    defaults = dict(vocab_size=50277, n_embd=768, n_layer=12, ctx_len=1024, variant="RWKV", dim_att=None,
                    dim_ffn=None)

    def validate(self):
        for key in ("vocab_size", "n_embd", "n_layer", "ctx_len", "dim_att", "dim_ffn"):
            value = getattr(self, key)
            if value is None and key.startswith("dim_"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RWKV4Config.{key} must be a positive integer, got {value!r}")
        if self.variant not in ("RWKV", "RWKV-ffnPre"):
            raise ValueError(f"RWKV4Config.variant must be 'RWKV' or 'RWKV-ffnPre', got {self.variant!r}")

    @property
    def attention_width(self):
        return self.dim_att or self.n_embd

    @property
    def ffn_width(self):
        return self.dim_ffn or 4 * self.n_embd
