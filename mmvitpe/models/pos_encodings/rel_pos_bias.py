"""Relative position bias (Swin, Liu et al. 2021; BEiT, Bao et al. 2022).

Per block and head, a learned table over the (2h-1)(2w-1) relative offsets of an
h x w attention grid is added to the scaled logits:

    A = softmax(q k^T / sqrt(d) + B[idx(i, j)])

with the Swin/BEiT layout (offset = query minus key, as ``timm``'s
``gen_relative_position_index``), so BEiT/Swin tables load as they are. The
table is stored for ``table_grid`` (default: the pretraining grid, which is also
ViT-Adapter's 14x14 window); another attention grid (a window or the whole
image) gets the table resized bicubically (Swin v1 fine-tuning rule). Tables
start at zero, so adding the scheme to a pretrained ViT changes nothing at
step 0. Prefix tokens get zero bias, except with ``class_entries`` (BEiT): three
more learned entries per head for class query -> patch key, patch query -> class
key and class -> class (BEiT's last three table rows); registers still get zero.
Works with windowed attention: the grid is the window's.
"""
import math
import re
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_bool, check_size_pair
from .base import Grid, PEState, PositionalEncoding, expand_relative_table, pad_prefix


@POS_ENCODINGS.register_module()
class RelPosBias(PositionalEncoding):
    """Learned per-block relative position bias on the attention logits.

    Args:
        blocks: Blocks with a bias (default: all).
        table_grid: (h, w) the tables are stored for (default: pretrain grid).
        class_entries: Learn BEiT's three class-token entries per block
            (``class_tables.<i>``, (3, heads), start at zero); needs a class token.
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Optional[Sequence[int]] = None,
                 table_grid: Optional[Grid] = None, class_entries: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        class_entries = check_bool('RelPosBias', 'class_entries', class_entries)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.table_grid = (tuple(self.pretrain_grid) if table_grid is None
                           else check_size_pair('RelPosBias', 'table_grid', table_grid))
        h, w = self.table_grid
        self.tables = nn.ParameterDict({
            str(b): nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), self.num_heads))
            for b in self.blocks})
        if class_entries and self.num_prefix_tokens == self.num_register_tokens:
            raise ValueError('RelPosBias: class_entries=True needs a class token; set '
                             'class_token=True on the model or class_entries=False')
        self.class_tables = nn.ParameterDict({
            str(b): nn.Parameter(torch.zeros(3, self.num_heads)) for b in self.blocks
        }) if class_entries else None

    def _bias(self, table: Tensor, grid: Grid) -> Tensor:
        h, w = self.table_grid
        table = table.t().reshape(self.num_heads, 2 * h - 1, 2 * w - 1)
        if tuple(grid) != self.table_grid:
            table = F.interpolate(table[None], size=(2 * grid[0] - 1, 2 * grid[1] - 1),
                                  mode='bicubic', align_corners=False)[0]
        return expand_relative_table(table, grid, key_minus_query=False)

    def _fit_table(self, table: Tensor, block: str) -> Dict[str, Tensor]:
        """A square Swin/BEiT table ((2s-1)^2 [+3 class entries], heads) -> ours
        (the class entries too, when this scheme learns them)."""
        length = table.shape[0]
        if not table.is_floating_point():
            raise ValueError(f'a relative position table must be floating point, got '
                             f'{table.dtype}')
        if table.dim() != 2 or table.shape[1] != self.num_heads:
            raise ValueError(f'relative position table of shape {tuple(table.shape)} does not '
                             f'fit RelPosBias: expected (entries, {self.num_heads} heads)')
        for extra in (0, 3):
            side = math.isqrt(length - extra)
            if side * side == length - extra and side % 2 == 1:
                break
        else:
            raise ValueError(f'relative position table of length {length} is not a square '
                             '(2s-1)^2 grid, with or without 3 class-token entries')
        grid = table[:length - extra].t().reshape(1, self.num_heads, side, side)
        h, w = self.table_grid
        grid = F.interpolate(grid, size=(2 * h - 1, 2 * w - 1), mode='bicubic',
                             align_corners=False)
        out = {f'tables.{block}': grid.reshape(self.num_heads, -1).t()}
        if extra and self.class_tables is not None:
            out[f'class_tables.{block}'] = table[length - extra:]
        return out

    # BEiT/Swin tables, per block or BEiT's shared one
    foreign_keys = re.compile(r'relative_position_bias_table$')
    recomputed_keys = re.compile(r'relative_position_index$')

    def convert_foreign(self, key, value):
        """The shared table is copied to every block."""
        if key == 'rel_pos_bias.relative_position_bias_table':
            return {k: v for b in self.blocks for k, v in self._fit_table(value, b).items()}
        m = re.match(r'^blocks\.(\d+)\.attn\.relative_position_bias_table$', key)
        if m and int(m.group(1)) in self.blocks:
            return self._fit_table(value, m.group(1))
        return None

    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """Each block's bias table at its own size (Swin layout: query minus key)."""
        h, w = self.table_grid
        return {f'block{b}': self.tables[str(b)].t().reshape(self.num_heads, 2 * h - 1, 2 * w - 1)
                for b in self.blocks}

    def logit_terms(self, block: int, attn_grid: Grid, state: PEState, num_prefix: int):
        if block not in self.blocks:
            return None, None
        table = self.tables[str(block)]
        bias = self._inference_cached((block, tuple(attn_grid)),
                                      lambda: self._bias(table, attn_grid))
        bias = pad_prefix(bias, num_prefix, 0.0)
        if self.class_tables is not None:  # BEiT's index; the padded copy, not the memo
            entries = self.class_tables[str(block)].to(bias.dtype)
            bias[:, 0, num_prefix:] = entries[0][:, None]
            bias[:, num_prefix:, 0] = entries[1][:, None]
            bias[:, 0, 0] = entries[2]
        return bias, None
