"""2D ALiBi (CROMA, Fuller et al., NeurIPS 2023; ALiBi: Press et al., ICLR 2022).

Every head h adds a fixed penalty, linear in the Euclidean distance (in
patches) between the query's and the key's patch centres, to the scaled logits:

    A_h = softmax(q k^T / sqrt(d) - m_h * sqrt(dx^2 + dy^2))

with ALiBi's geometric slopes m_h = 2^(-8 (h+1) / heads) for a power-of-two
head count (other counts interleave the next power's sequence, as ALiBi and
CROMA do). Nothing is learned; the bias depends on the offset only, so it is
exact at any grid and in any window. Prefix tokens get zero bias (CROMA has
none: it pools patch tokens).

Reference: antofuller/CROMA @ 59505a6bcadbf36ba20767270154bf9f3067c5e7,
``use_croma.py`` ``get_2dalibi`` (square grids there; here any h x w).
No kept library builds 2D ALiBi (timm has none), hence by hand.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from .base import (Grid, PEState, PositionalEncoding, expand_relative_table, memo_off,
                   pad_prefix, relative_offsets)


def alibi_slopes(num_heads: int) -> List[float]:
    """ALiBi's per-head slopes (Press et al.; CROMA ``get_slopes``)."""
    def power_of_two(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]
    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][:num_heads - closest]


class FixedLogitBias(PositionalEncoding):
    """Base of the parameter-free additive biases over offsets: memoises the
    (heads, N, N) bias per block, attention grid and device in training too
    (nothing needs a gradient), and pads prefix tokens with 0. Subclasses keep
    their slopes in a non-persistent ``slopes`` buffer (which gives the device)."""

    slopes: Tensor

    def __init__(self, blocks: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))

    def offset_table(self, block: int, grid: Grid) -> Tensor:
        """(heads, 2h-1, 2w-1) bias of one block over the offsets (key minus query)."""
        raise NotImplementedError

    def logit_terms(self, block: int, attn_grid: Grid, state: PEState, num_prefix: int):
        if block not in self.blocks:
            return None, None
        if memo_off():
            return pad_prefix(self._bias(block, attn_grid), num_prefix, 0.0), None
        memo = self.__dict__.setdefault('_bias_memo', {})
        key = (self._memo_block(block), tuple(attn_grid), self.slopes.device)
        if key not in memo:
            if len(memo) >= 32:
                memo.clear()
            memo[key] = self._bias(block, attn_grid)
        return pad_prefix(memo[key], num_prefix, 0.0), None

    def _bias(self, block: int, attn_grid: Grid) -> Tensor:
        return expand_relative_table(self.offset_table(block, attn_grid), attn_grid,
                                     key_minus_query=True)

    def _memo_block(self, block: int) -> int:
        """Blocks that share one bias share one memo entry."""
        return block

    def _distances(self, grid: Grid) -> Tensor:
        """(2h-1, 2w-1) Euclidean length of every offset, in patches."""
        h, w = grid
        return relative_offsets(tuple(grid), self.slopes.device).norm(dim=-1).view(
            2 * h - 1, 2 * w - 1)


@POS_ENCODINGS.register_module()
class ALiBi2D(FixedLogitBias):
    """2D ALiBi: -slope_h x Euclidean patch distance on the logits.

    Args:
        blocks: Blocks with the bias (default: all, as CROMA).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(blocks=blocks, **kwargs)
        self.register_buffer('slopes', torch.tensor(alibi_slopes(self.num_heads)),
                             persistent=False)

    def offset_table(self, block: int, grid: Grid) -> Tensor:
        return -self.slopes.float()[:, None, None] * self._distances(grid)

    def _memo_block(self, block: int) -> int:
        return 0

    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """The bias over the offsets of ``grid`` (the same in every block)."""
        return {'every block': self.offset_table(self.blocks[0], grid)}
