"""Learnable absolute 1D position embedding (ViT, Dosovitskiy et al., ICLR 2021; DeiT).

    x_0 = [cls; patches] + E,   E in R^{(S + H0*W0) x D},  E ~ trunc_normal(std=0.02)

S is 1 with a class-token slot (ViT/DeiT) and 0 without (timm ``no_embed_class``);
register tokens never get an entry (DINOv2). The table is stored at
the pretraining grid H0 x W0; for another grid its patch part is resized
bicubically (``timm.layers.resample_abs_pos_embed``), the slot is kept. In
inference the resized table is cached per grid.
"""
import math
import re
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model.weight_init import trunc_normal_
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_bool, check_real
from mmvitpe.weights.ownership import Claim
from .base import Grid, PEState, PositionalEncoding

INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'area', 'nearest-exact')


class AbsoluteTable(nn.Module):
    """A learnable (1, S + H0*W0, D) table and its resize to any grid.

    Shared by the schemes that learn one absolute table (this file and the
    LaPE/PVG/MPVG family).

    Args:
        embed_dim: D.
        grid: (H0, W0) the table is stored at.
        num_slots: entries for prefix tokens in front of the patch entries.
        interpolation: ``F.interpolate`` mode for resizing.
        antialias: antialias when shrinking (ViT-Adapter: False, timm: True).
        interpolate_offset: 0: resize to the grid (timm). Else resize by the
            scale factor (grid + offset) / table grid, as the official DINOv2
            code does with 0.1 (its ``interpolate_offset``, after dino #8).
    """

    def __init__(self, embed_dim: int, grid: Grid, num_slots: int,
                 interpolation: str = 'bicubic', antialias: bool = False,
                 interpolate_offset: float = 0.) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation={interpolation!r}; valid: {INTERPOLATIONS}')
        check_real('LearnedPE', 'interpolate_offset', interpolate_offset)  # a number at all
        if not 0 <= interpolate_offset < 1:
            raise ValueError(f'interpolate_offset={interpolate_offset!r} must be a number in '
                             '[0, 1) (DINOv2: 0.1; 0: resize to the grid, as timm)')
        self.interpolate_offset = float(interpolate_offset)
        self.grid = tuple(grid)
        self.num_slots = num_slots
        self.interpolation = interpolation
        self.antialias = antialias
        self.weight = nn.Parameter(torch.zeros(1, num_slots + grid[0] * grid[1], embed_dim))
        trunc_normal_(self.weight, std=0.02)

    def fit_checkpoint(self, weight: Tensor) -> Tuple[Tensor, str]:
        """A checkpoint's table (1, S' + h*w, D) reshaped to this table's layout, and
        what of it the checkpoint did not fill ('' when it filled everything).

        The class slot is detected by length, never guessed, and this table's
        own layout is tried first: its grid with its slots, its grid with the
        other slot count (0 or 1), then a square grid with 0 or 1 slot. A
        length that other readings also explain (1 + 4*6 = 5*5) is read the
        first way and said so in the log. Source slots are dropped when this
        table has none; when it has slots but the source has none, the current
        slot values are kept and named as not filled. The patch part is resized to
        this table's grid.
        """
        if not weight.is_floating_point():
            raise ValueError(f'a position table must be floating point, got {weight.dtype}')
        if weight.dim() == 2:
            weight = weight[None]
        if weight.dim() != 3 or weight.shape[0] != 1 or weight.shape[-1] != self.weight.shape[-1]:
            raise ValueError(f'cannot fit a position table of shape {tuple(weight.shape)} to '
                             f'{tuple(self.weight.shape)}: expected (1, slots + h*w, '
                             f'{self.weight.shape[-1]})')
        readings = self._grid_readings(weight.shape[1])
        if not readings:
            raise ValueError(
                f'cannot fit a position table of shape {tuple(weight.shape)} to '
                f'{tuple(self.weight.shape)} (grid {self.grid}, {self.num_slots} class slot(s)): '
                'its length is neither a square grid nor this grid, with or without one '
                'class slot')
        slots, source_grid = readings[0]
        if len(readings) > 1:
            others = '; '.join(f'{g[0]}x{g[1]} grid + {s} slot(s)' for s, g in readings[1:])
            print_log(f'position table of length {weight.shape[1]} read as a {source_grid[0]}x'
                      f'{source_grid[1]} grid + {slots} class slot(s) (this model\'s layout '
                      f'first); it would also fit: {others}', logger='current', level=30)
        patches = resample_abs_pos_embed(
            weight[:, slots:], new_size=list(self.grid), old_size=list(source_grid),
            num_prefix_tokens=0, interpolation=self.interpolation, antialias=self.antialias)
        if self.num_slots == 0:
            return patches, ''
        if slots:
            return torch.cat([weight[:, :slots].to(patches), patches], dim=1), ''
        kept = self.weight[:, :self.num_slots].detach().to(patches)
        return torch.cat([kept, patches], dim=1), (
            f'its class slot (row 0): the checkpoint\'s table {tuple(weight.shape)} has none')

    def claim(self, weight: Tensor, name: str) -> Claim:
        """The owner's claim of a checkpoint's table for this table, ``name``."""
        table, not_filled = self.fit_checkpoint(weight)
        return Claim({name: table}, invented={name: not_filled} if not_filled else None)

    def _grid_readings(self, length: int) -> list:
        """(slots, grid) pairs that explain a table length, this table's layout first."""
        area = self.grid[0] * self.grid[1]
        own_first = (self.num_slots, 1 - self.num_slots) if self.num_slots < 2 else (0, 1)
        readings = [(s, self.grid) for s in own_first if length - s == area]
        for slots in (0, 1):
            side = math.isqrt(max(length - slots, 0))
            if side and side * side == length - slots and (slots, (side, side)) not in readings:
                readings.append((slots, (side, side)))
        return readings

    def resized(self, grid: Grid) -> Tensor:
        if self.interpolate_offset and tuple(grid) != self.grid:
            return self._resized_by_offset_scale(tuple(grid))
        return resample_abs_pos_embed(
            self.weight, new_size=list(grid), old_size=list(self.grid),
            num_prefix_tokens=self.num_slots, interpolation=self.interpolation,
            antialias=self.antialias)

    def _resized_by_offset_scale(self, grid: Grid) -> Tensor:
        """The patch part resampled with the scale factor (grid + offset) / table
        grid (the output is still ``grid``: the offset is below one patch)."""
        slots, patches = self.weight[:, :self.num_slots], self.weight[:, self.num_slots:]
        table = patches.reshape(1, *self.grid, -1).permute(0, 3, 1, 2).float()
        scale = tuple((g + self.interpolate_offset) / g0 for g, g0 in zip(grid, self.grid))
        table = F.interpolate(table, scale_factor=scale, mode=self.interpolation,
                              antialias=self.antialias)
        table = table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        return torch.cat([slots, table.to(patches.dtype)], dim=1)


def add_to_tokens(x: Tensor, pos: Tensor, num_prefix: int, num_slots: int) -> Tensor:
    """x + pos where pos has entries for the first ``num_slots`` prefix tokens
    (the class token) only: the other prefix tokens (registers) get nothing."""
    if num_slots == num_prefix:
        return x + pos
    return torch.cat([x[:, :num_slots] + pos[:, :num_slots], x[:, num_slots:num_prefix],
                      x[:, num_prefix:] + pos[:, num_slots:]], dim=1)


def resolve_class_slot(scheme: PositionalEncoding, class_slot: Optional[bool]) -> int:
    """Number of table slots for prefix tokens: the class token's, if asked
    for (default: iff there is one); registers never get one."""
    class_tokens = scheme.num_prefix_tokens - scheme.num_register_tokens
    if class_slot is None:
        class_slot = class_tokens > 0
    check_bool(type(scheme).__name__, 'class_slot', class_slot)
    if class_slot and class_tokens == 0:
        raise ValueError(f'{type(scheme).__name__}: class_slot=True but the model has no '
                         'class token; set class_token=True on the model or class_slot=False')
    return class_tokens if class_slot else 0


@POS_ENCODINGS.register_module()
class LearnedPE(PositionalEncoding):
    """Learnable absolute position embedding added to the input tokens.

    Args:
        class_slot: Whether the table has an entry for the class token
            (ViT/DeiT: yes; DeiT-III style: no). Default: yes iff the model
            has a class token.
        interpolation: Resize mode for other grids (default bicubic).
        antialias: Antialias when shrinking the table (default False, as
            ViT-Adapter; timm's own resize uses True).
        interpolate_offset: 0 (default): resize to the grid, as timm. 0.1 with
            ``antialias=False``: the official DINOv2 models' resize (scale
            factor (grid + 0.1) / table grid; their with-registers models use
            0 and antialias, as timm).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, class_slot: Optional[bool] = None, interpolation: str = 'bicubic',
                 antialias: bool = False, interpolate_offset: float = 0., **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = AbsoluteTable(self.embed_dim, self.pretrain_grid,
                                   resolve_class_slot(self, class_slot), interpolation,
                                   check_bool('LearnedPE', 'antialias', antialias),
                                   interpolate_offset)

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        state.tensors['pos'] = self._inference_cached(
            (state.grid, device, dtype), lambda: self.table.resized(state.grid))
        return state

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return add_to_tokens(x, state.tensors['pos'], self.num_prefix_tokens,
                             self.table.num_slots)

    # timm/DeiT/ViT-Adapter table: class slot by length, grid resized
    foreign_keys = re.compile(r'^pos_embed$')

    def convert_foreign(self, key, value):
        return self.table.claim(value, 'table.weight') if key == 'pos_embed' else None
