"""Learnable 2D factorized position embedding (ViT paper, Dosovitskiy et al. 2021, App. D.4).

Two tables, one per axis, each D/2 wide; a patch at row y, column x gets

    E(y, x) = [X_x ; Y_y],   X in R^{W0 x D/2},  Y in R^{H0 x D/2}

added to its token. For another grid each table is resized linearly along its
own axis. Prefix tokens get no embedding.
"""
import torch
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from .base import Grid, PEState, PositionalEncoding
from .learned import add_to_tokens


def _resize_axis(table: Tensor, length: int) -> Tensor:
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode='linear',
                         align_corners=False)[0].t()


@POS_ENCODINGS.register_module()
class FactorizedPE(PositionalEncoding):
    """Concatenated learnable column (X) and row (Y) embeddings, D/2 each."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.embed_dim % 2:
            raise ValueError(f'FactorizedPE needs an even embed_dim, got {self.embed_dim}')
        rows, cols = self.pretrain_grid
        self.col_embed = nn.Parameter(torch.zeros(cols, self.embed_dim // 2))
        self.row_embed = nn.Parameter(torch.zeros(rows, self.embed_dim // 2))
        trunc_normal_(self.col_embed, std=0.02)
        trunc_normal_(self.row_embed, std=0.02)

    def _table(self, grid: Grid) -> Tensor:
        rows, cols = grid
        x = _resize_axis(self.col_embed, cols)[None, :, :].expand(rows, -1, -1)
        y = _resize_axis(self.row_embed, rows)[:, None, :].expand(-1, cols, -1)
        return torch.cat([x, y], dim=-1).reshape(1, rows * cols, self.embed_dim)

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        state.tensors['pos'] = self._inference_cached(
            (state.grid, device, dtype), lambda: self._table(state.grid))
        return state

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return add_to_tokens(x, state.tensors['pos'], self.num_prefix_tokens, 0)
