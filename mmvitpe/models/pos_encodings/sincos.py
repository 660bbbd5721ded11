"""Fixed 2D sine-cosine position embedding (MAE, He et al., CVPR 2022; MoCo v3).

For a patch at column x and row y, with D4 = D/4 and w_k = 1 / T^(k / D4):

    E(y, x) = [sin(x w), cos(x w), sin(y w), cos(y w)]      (layout 'mae', default)
    E(y, x) = [sin(y w), sin(x w), cos(y w), cos(x w)]      (layout 'timm')

T = 10000. Nothing is learned; the table is generated exactly for any grid
(no interpolation) and cached per grid. Prefix tokens get zeros, as in MAE.
'mae' is what MAE checkpoints were trained with. timm's
``build_sincos2d_pos_embed`` gives only the 'timm' layout, so both are
generated here.
"""
import torch
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_positive
from .base import Grid, PEState, PositionalEncoding, eager_lru_cache
from .learned import add_to_tokens


LAYOUTS = ('mae', 'timm')


@eager_lru_cache(maxsize=16)
def sincos_2d(grid: Grid, dim: int, temperature: float = 10000.,
              layout: str = 'mae') -> Tensor:
    """(H*W, dim) table, row-major over (y, x); memoised (treat as read-only)."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                            torch.arange(grid[1], dtype=torch.float64), indexing='ij')
    ax = xs.flatten()[:, None] * omega[None]
    ay = ys.flatten()[:, None] * omega[None]
    parts = ([ax.sin(), ax.cos(), ay.sin(), ay.cos()] if layout == 'mae' else
             [ay.sin(), ax.sin(), ay.cos(), ax.cos()])
    return torch.cat(parts, dim=1).float()


@POS_ENCODINGS.register_module()
class SinCosPE(PositionalEncoding):
    """Fixed 2D sin-cos embedding added to the input.

    Args:
        temperature: T in the frequencies (default 10000).
        layout: Channel layout, 'mae' (default) or 'timm' (see above).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, temperature: float = 10000., layout: str = 'mae', **kwargs) -> None:
        super().__init__(**kwargs)
        if self.embed_dim % 4:
            raise ValueError(f'SinCosPE needs embed_dim divisible by 4, got {self.embed_dim}')
        if layout not in LAYOUTS:
            raise ValueError(f'SinCosPE layout={layout!r}; valid: {LAYOUTS}')
        self.temperature = check_positive('SinCosPE', 'temperature', temperature)
        self.layout = layout

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        table = sincos_2d(state.grid, self.embed_dim, self.temperature, self.layout)
        state.tensors['pos'] = table.to(device)[None]
        return state

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return add_to_tokens(x, state.tensors['pos'].to(x.dtype), self.num_prefix_tokens, 0)
