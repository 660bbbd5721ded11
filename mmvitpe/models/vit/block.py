"""Pre-norm transformer block with the positional-encoding input site."""
from functools import partial
from typing import Optional

from timm.layers import DropPath, LayerScale, Mlp, SwiGLU, SwiGLUPacked
from torch import Tensor, nn

from ..pos_encodings import PEState, PositionalEncoding
from ..pos_encodings.base import skip_leading
from .attention import Attention

# MLP variants, all timm layers and key names: 'mlp' (fc1, GELU, fc2: ViT/DeiT,
# DINOv2 S/B/L), 'swiglu_packed' (one fc1 holding [x; gate], SiLU: DINOv2-g,
# EVA-02 T/S), 'swiglu' (separate fc1_g / fc1_x: DINOv3 S+/H+, EVA-02 B/L).
MLP_LAYERS = ('mlp', 'swiglu_packed', 'swiglu')


def build_mlp(dim: int, hidden: int, mlp_layer: str, mlp_norm: bool, mlp_align: int,
              norm_eps: float, drop: float) -> nn.Module:
    """One of :data:`MLP_LAYERS` with ``hidden`` features after the activation
    (the gated width for the SwiGLUs), optionally with a LayerNorm on them
    (EVA-02's sub-LN) and that width rounded up to a multiple of ``mlp_align``."""
    if mlp_layer not in MLP_LAYERS:
        raise ValueError(f'mlp_layer={mlp_layer!r}; valid: {MLP_LAYERS}')
    if mlp_align and mlp_layer != 'swiglu':
        raise ValueError(f"mlp_align={mlp_align} needs mlp_layer='swiglu' (got {mlp_layer!r})")
    norm = partial(nn.LayerNorm, eps=norm_eps) if mlp_norm else None
    if mlp_layer == 'swiglu':
        return SwiGLU(dim, hidden, norm_layer=norm, drop=drop, align_to=mlp_align)
    if mlp_layer == 'swiglu_packed':
        return SwiGLUPacked(dim, 2 * hidden, norm_layer=norm, drop=drop)
    return Mlp(dim, hidden, norm_layer=norm, drop=drop)


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
        norm_eps: LayerNorm eps (the MLP's sub-LN included).
        mlp_layer: One of :data:`MLP_LAYERS`.
        mlp_norm: LayerNorm on the MLP's hidden features (EVA-02 sub-LN).
        mlp_align: Round the SwiGLU hidden width up to this multiple (DINOv3: 8).
        drop: Dropout after attention projection and in the MLP.
        attn_drop: Dropout on attention weights.
        window_padding: How a windowed block pads its grid (see
            ``attention.WINDOW_PADDINGS``).
    """

    def __init__(self, dim: int, num_heads: int, index: int, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, window_size: int = 0, drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = None, norm_eps: float = 1e-6,
                 drop: float = 0., attn_drop: float = 0., mlp_layer: str = 'mlp',
                 mlp_norm: bool = False, mlp_align: int = 0,
                 window_padding: str = 'qkv') -> None:
        super().__init__()
        self.index = index
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, window_size, attn_drop, drop,
                              window_padding)
        self.ls1 = (LayerScale(dim, layer_scale_init_value)
                    if layer_scale_init_value is not None else nn.Identity())
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = build_mlp(dim, int(dim * mlp_ratio), mlp_layer, mlp_norm, mlp_align,
                             norm_eps, drop)
        self.ls2 = (LayerScale(dim, layer_scale_init_value)
                    if layer_scale_init_value is not None else nn.Identity())
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, pe: PositionalEncoding, state: PEState, queries: int = 0,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        """``queries``: tokens in front of the prefix tokens that the PE never sees
        (EoMT's learned queries); ``attn_mask``: an additive (B, 1, N, N) term on
        the attention logits (EoMT's masked attention), global blocks only."""
        h = skip_leading(pe.attention_input, self.norm1(x), queries, self.index, state)
        x = x + self.drop_path1(self.ls1(self.attn(h, self.index, pe, state, queries,
                                                   attn_mask)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x
