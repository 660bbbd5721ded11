"""Pre-norm transformer block with the positional-encoding input site."""
from typing import Optional

from timm.layers import DropPath, LayerScale, Mlp
from torch import Tensor, nn

from ..pos_encodings import PEState, PositionalEncoding
from .attention import Attention


class Block(nn.Module):
    """``x += MSA(pe(LN(x)))``, ``x += MLP(LN(x))``, with optional layer scale.

    Parameter names follow timm (norm1, attn, ls1, norm2, mlp, ls2).

    Args:
        dim: Token width.
        num_heads: Attention heads.
        index: This block's index in the transformer (the PE sites are keyed on it).
        mlp_ratio: MLP hidden width / dim.
        qkv_bias: Bias in the qkv projection.
        window_size: 0 for global attention, else the window side.
        drop_path: Stochastic-depth rate of this block.
        layer_scale_init_value: Init of the per-channel residual scales, or
            None for none.
        norm_eps: LayerNorm eps.
        drop: Dropout after attention projection and in the MLP.
        attn_drop: Dropout on attention weights.
    """

    def __init__(self, dim: int, num_heads: int, index: int, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, window_size: int = 0, drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = None, norm_eps: float = 1e-6,
                 drop: float = 0., attn_drop: float = 0.) -> None:
        super().__init__()
        self.index = index
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, window_size, attn_drop, drop)
        self.ls1 = (LayerScale(dim, layer_scale_init_value)
                    if layer_scale_init_value is not None else nn.Identity())
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.ls2 = (LayerScale(dim, layer_scale_init_value)
                    if layer_scale_init_value is not None else nn.Identity())
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, pe: PositionalEncoding, state: PEState) -> Tensor:
        h = pe.attention_input(self.norm1(x), self.index, state)
        x = x + self.drop_path1(self.ls1(self.attn(h, self.index, pe, state)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x
