"""Feed-forward blocks shared by the model families.

GatedMLP is the SwiGLU feed-forward of flash-linear-attention's models (fla.modules.GatedMLP):
    down_proj(silu(gate_proj(x)) * up_proj(x)),   all three Linear layers without bias.
When intermediate_size is None it is derived from hidden_ratio (default 4) as fla does: int(D * hidden_ratio * 2/3)
rounded UP to a multiple of 256 (D=512 -> 1536, 1024 -> 2816, 2048 -> 5632), which keeps the parameter count near
hidden_ratio * D^2 * 2 of a plain two-matrix MLP.
"""
import paddle.nn as nn
import paddle.nn.functional as F

from .linear import Linear

ACTIVATIONS = ("swish", "silu")  # silu == swish; fla's GatedMLP accepts "swish"


def gated_mlp_intermediate_size(hidden_size, hidden_ratio=4, intermediate_size=None):
    """fla's rule for the width of the gated MLP."""
    if intermediate_size is not None:
        return int(intermediate_size)
    if hidden_ratio is None:
        hidden_ratio = 4
    size = int(hidden_size * hidden_ratio * 2 / 3)
    return 256 * ((size + 255) // 256)


class GatedMLP(nn.Layer):
    """SwiGLU MLP with fla's parameter names gate_proj, up_proj ([D -> I]) and down_proj ([I -> D])."""

    def __init__(self, hidden_size, hidden_ratio=4, intermediate_size=None, hidden_act="swish"):
        super().__init__()
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"GatedMLP supports hidden_act 'swish' (SwiGLU) only, got {hidden_act!r}")
        self.hidden_size = int(hidden_size)
        self.intermediate_size = gated_mlp_intermediate_size(hidden_size, hidden_ratio, intermediate_size)
        self.gate_proj = Linear(self.hidden_size, self.intermediate_size, bias_attr=False)
        self.up_proj = Linear(self.hidden_size, self.intermediate_size, bias_attr=False)
        self.down_proj = Linear(self.intermediate_size, self.hidden_size, bias_attr=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
