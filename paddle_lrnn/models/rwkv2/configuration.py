"""RWKV2Config: the hyper-parameters of BlinkDL's RWKV-v2-RNN (defaults: the enwik8 model of the original)."""
from ..modeling_utils import PretrainedConfig


class RWKV2Config(PretrainedConfig):
    """vocab_size, n_embd, n_layer, ctx_len as the original; variant "RWKV" or "RWKV-ffnPre" (the original's
    model_type: in "RWKV-ffnPre" block 0 has a second channel-mix where the time-mix would be); time_mix_kernel
    "wkv" (O(T) recurrence, default) or "timex" (the original O(T^2) operator); head_qk_dim of the copy head."""

    model_type = "rwkv2"
    defaults = dict(vocab_size=6064, n_embd=512, n_layer=6, ctx_len=1024, variant="RWKV", time_mix_kernel="wkv",
                    head_qk_dim=256)

    def validate(self):
        for key in ("vocab_size", "n_embd", "n_layer", "ctx_len", "head_qk_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RWKV2Config.{key} must be a positive integer, got {value!r}")
        if self.variant not in ("RWKV", "RWKV-ffnPre"):
            raise ValueError(f"RWKV2Config.variant must be 'RWKV' or 'RWKV-ffnPre', got {self.variant!r}")
        if self.time_mix_kernel not in ("wkv", "timex"):
            raise ValueError(f"RWKV2Config.time_mix_kernel must be 'wkv' or 'timex', got {self.time_mix_kernel!r}")
