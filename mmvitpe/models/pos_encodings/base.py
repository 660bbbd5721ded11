"""The contract between a vision transformer and its positional-encoding scheme.

A scheme is one module that the transformer consults at fixed sites, always in
this order, and never by name:

==================  ==========================================================
site                 call
==================  ==========================================================
once per forward    ``state = pe.prepare(grid, device, dtype)``
input embedding     ``x = pe.embed(x, state)``       (prefix tokens first)
per block input     ``h = pe.attention_input(norm1(x), i, state)``
inside attention    ``q, k = pe.rotate(q, k, i, state)`` and
                    ``bias, gain = pe.logit_terms(i, attn_grid, state)``
between blocks      ``x = pe.after_block(x, i, state)``
final norm          ``y = pe.final(norm(x), state)``
==================  ==========================================================

Every site is the identity here; a scheme overrides the one or two it acts at.
"""
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

Grid = Tuple[int, int]


@dataclass
class PEState:
    """What a scheme precomputed for one forward pass.

    Attributes:
        grid: (rows, cols) of the patch-token grid.
        tensors: scheme-specific tensors, e.g. the resized table or the
            per-block PE chain of LaPE.
    """
    grid: Grid
    tensors: Dict[str, object] = field(default_factory=dict)


class PositionalEncoding(BaseModule):
    """Base class of all schemes; every site is the identity.

    Args:
        embed_dim: Token width D.
        num_heads: Attention heads per block.
        depth: Number of transformer blocks.
        num_prefix_tokens: Class (or other prefix) tokens in front of the
            patch tokens. Schemes act on patch tokens and leave prefix tokens
            alone unless they document otherwise.
        pretrain_grid: Patch grid the model is (pre)trained at; learned tables
            are stored at this size and resized to other grids at run time.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 depth: int,
                 num_prefix_tokens: int = 0,
                 pretrain_grid: Grid = (14, 14),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.num_prefix_tokens = num_prefix_tokens
        self.pretrain_grid = tuple(pretrain_grid)

    # ---- the sites -------------------------------------------------------
    def prepare(self, grid: Grid, device: torch.device,
                dtype: torch.dtype) -> PEState:
        return PEState(tuple(grid))

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return x

    def attention_input(self, x: Tensor, block: int, state: PEState) -> Tensor:
        return x

    def rotate(self, q: Tensor, k: Tensor, block: int,
               state: PEState) -> Tuple[Tensor, Tensor]:
        return q, k

    def logit_terms(self, block: int, attn_grid: Grid, state: PEState,
                    num_prefix: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Additive bias and multiplicative gain on the scaled attention logits.

        Both are (heads, N, N) over the tokens of one attention call (a window
        or the whole grid, plus ``num_prefix`` prefix tokens), or None.
        """
        return None, None

    def after_block(self, x: Tensor, block: int, state: PEState) -> Tensor:
        return x

    def final(self, x: Tensor, state: PEState) -> Tensor:
        return x

    # ---- helpers shared by the schemes ------------------------------------
    def _block_set(self, blocks: Optional[Sequence[int]], name: str) -> frozenset:
        """Validate a user's block list; None means every block."""
        if blocks is None:
            return frozenset(range(self.depth))
        bad = [b for b in blocks if not 0 <= b < self.depth]
        if bad:
            raise ValueError(f'{type(self).__name__}: {name}={list(blocks)} names blocks '
                             f'{bad} outside 0..{self.depth - 1}')
        return frozenset(blocks)

    def _split_prefix(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        n = self.num_prefix_tokens
        return x[:, :n], x[:, n:]

    def _inference_cached(self, key: tuple, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, memoised per key while autograd is off (inference).

        Training recomputes every time so gradients flow; the memo is keyed on
        the parameters' versions, so loading new weights invalidates it.
        """
        if torch.is_grad_enabled():
            return compute()
        cache = self.__dict__.setdefault('_inference_memo', {})
        versions = tuple(p._version for p in self.parameters())
        hit = cache.get(key)
        if hit is None or hit[0] != versions:
            if len(cache) >= 16:
                cache.clear()
            hit = cache[key] = (versions, compute())
        return hit[1]


def pad_prefix(table: Tensor, num_prefix: int, value: float) -> Tensor:
    """Extend a (heads, N, N) logit term with ``value`` rows/cols for prefix tokens."""
    if num_prefix == 0:
        return table
    return F.pad(table, (num_prefix, 0, num_prefix, 0), value=value)


@lru_cache(maxsize=32)
def relative_offsets(grid: Grid, device: torch.device) -> Tuple[Tensor, Tensor]:
    """All distinct 2D offsets of a grid and, per token pair, which one applies.

    Returns:
        offsets: ((2H-1)(2W-1), 2) float (dx, dy) = key minus query, in
            patches (SP-ViT's channel order), row-major over dy then dx.
        index: (N, N) long, ``index[i, j]`` = row of ``offsets`` for query i
            and key j.
    """
    h, w = grid
    dy = torch.arange(-(h - 1), h, device=device)
    dx = torch.arange(-(w - 1), w, device=device)
    grid_dy, grid_dx = torch.meshgrid(dy, dx, indexing='ij')
    offsets = torch.stack([grid_dx, grid_dy], -1).reshape(-1, 2)
    ys, xs = torch.meshgrid(torch.arange(h, device=device),
                            torch.arange(w, device=device), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    rel_y = ys[None, :] - ys[:, None] + h - 1
    rel_x = xs[None, :] - xs[:, None] + w - 1
    return offsets.float(), rel_y * (2 * w - 1) + rel_x
