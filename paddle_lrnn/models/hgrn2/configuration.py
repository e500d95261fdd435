"""HGRN2Config: flash-linear-attention's HGRN2Config (fla 0.6.0) with the same config.json fields, names and
defaults, so a config.json written by fla loads here and ours loads in fla."""
from ...layers.hgrn2 import resolve_heads
from ...layers.mlp import ACTIVATIONS
from ..modeling_utils import PretrainedConfig

MODES = ("chunk", "fused_recurrent")


class HGRN2Config(PretrainedConfig):
    """Fields (fla's defaults): hidden_size 2048, num_hidden_layers 24, attn_mode "chunk", num_heads None,
    expand_ratio 128, use_short_conv False, conv_size 4, use_lower_bound True, hidden_ratio 4, intermediate_size None
    (-> int(D * hidden_ratio * 2/3) rounded up to a multiple of 256), hidden_act "swish", max_position_embeddings 2048
    (unused by HGRN2), elementwise_affine True (g_norm's weight), norm_eps 1e-6 (attn_norm, mlp_norm, norm; not
    g_norm, see layers/hgrn2.py), attn None, use_cache True, pad_token_id None, bos_token_id 1, eos_token_id 2,
    tie_word_embeddings False, initializer_range 0.02, fuse_norm/fuse_swiglu/fuse_cross_entropy True,
    fuse_linear_cross_entropy False, use_l2warp False, vocab_size 32000.

    num_heads / expand_ratio as fla resolves them: with expand_ratio None, expand_ratio = hidden_size // num_heads;
    with num_heads None, num_heads = hidden_size // expand_ratio; when both are given both are kept and the layers
    use expand_ratio (num_heads = hidden_size // expand_ratio), so pass expand_ratio=None to set the heads by
    num_heads. The fuse_* and use_l2warp flags pick fla's fused kernels and loss; they do not change the model and
    are kept only so that config.json round-trips. attn (hybrid softmax-attention layers) is not supported.
    pad_token_id: fla passes it to torch's Embedding as padding_idx, which only keeps that row's gradient at zero;
    here the row is looked up the same way (same logits) but is trained like any other."""

    model_type = "hgrn2"
    defaults = dict(
        hidden_size=2048, num_hidden_layers=24, attn_mode="chunk", num_heads=None, expand_ratio=128,
        use_short_conv=False, conv_size=4, use_lower_bound=True, hidden_ratio=4, intermediate_size=None,
        hidden_act="swish", max_position_embeddings=2048, elementwise_affine=True, norm_eps=1e-6, attn=None,
        use_cache=True, pad_token_id=None, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
        initializer_range=0.02, fuse_norm=True, fuse_swiglu=True, fuse_cross_entropy=True,
        fuse_linear_cross_entropy=False, use_l2warp=False, vocab_size=32000,
    )

    def __init__(self, **kwargs):
        # fla's resolution: fill in the missing one of num_heads / expand_ratio (both given: both kept).
        expand_ratio = kwargs.get("expand_ratio", self.defaults["expand_ratio"])
        num_heads = kwargs.get("num_heads", self.defaults["num_heads"])
        hidden_size = kwargs.get("hidden_size", self.defaults["hidden_size"])
        if _is_int(hidden_size) and hidden_size > 0:
            if expand_ratio is None and _is_int(num_heads) and num_heads > 0:
                kwargs["expand_ratio"] = hidden_size // num_heads
            elif num_heads is None and _is_int(expand_ratio) and 0 < expand_ratio <= hidden_size:
                kwargs["num_heads"] = hidden_size // expand_ratio  # (a larger ratio fits no head: validate says so)
        super().__init__(**kwargs)

    def validate(self):
        for key in ("hidden_size", "num_hidden_layers", "conv_size", "vocab_size"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"HGRN2Config.{key} must be a positive integer, got {value!r}")
        if self.expand_ratio is None and self.num_heads is None:
            raise ValueError("HGRN2Config: one of expand_ratio or num_heads must be given")
        for key in ("expand_ratio", "num_heads", "intermediate_size"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"HGRN2Config.{key} must be a positive integer or None, got {value!r}")
        resolve_heads(self.hidden_size, self.num_heads, self.expand_ratio)
        if self.use_lower_bound and self.layer_heads[0] * self.layer_heads[1] != self.hidden_size:
            raise ValueError(f"HGRN2Config: with use_lower_bound the forget-gate width num_heads * expand_ratio "
                             f"({self.layer_heads[0]} * {self.layer_heads[1]}) must equal hidden_size "
                             f"{self.hidden_size} (the lower bounds are [num_hidden_layers, hidden_size]); choose an "
                             f"expand_ratio that divides hidden_size")
        if self.attn_mode not in MODES:
            raise ValueError(f"HGRN2Config.attn_mode must be one of {', '.join(MODES)}, got {self.attn_mode!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"HGRN2Config.hidden_act {self.hidden_act!r} is not supported (the MLP is SwiGLU: "
                             f"'swish')")
        if self.hidden_ratio is not None and not (isinstance(self.hidden_ratio, (int, float))
                                                  and self.hidden_ratio > 0):
            raise ValueError(f"HGRN2Config.hidden_ratio must be positive or None, got {self.hidden_ratio!r}")
        if not isinstance(self.norm_eps, (int, float)) or not self.norm_eps > 0:
            raise ValueError(f"HGRN2Config.norm_eps must be positive, got {self.norm_eps!r}")
        if self.attn is not None:
            raise ValueError("HGRN2Config.attn (hybrid softmax-attention layers) is not supported by paddle_lrnn")
        if self.fuse_cross_entropy and self.fuse_linear_cross_entropy:
            raise ValueError("HGRN2Config: fuse_cross_entropy and fuse_linear_cross_entropy cannot both be True")

    @property
    def layer_heads(self):
        """(num_heads, expand_ratio) that the layers use (fla's layer rule: expand_ratio wins)."""
        return resolve_heads(self.hidden_size, self.num_heads, self.expand_ratio)

    @property
    def mlp_intermediate_size(self):
        from ...layers.mlp import gated_mlp_intermediate_size

        return gated_mlp_intermediate_size(self.hidden_size, self.hidden_ratio, self.intermediate_size)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
