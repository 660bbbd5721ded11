"""Shared machinery of 2D rotary position embeddings (RoPE-ViT, Heo et al., ECCV 2024).

Each head's q and k (patch tokens only) are rotated pairwise: channel pair
(2m, 2m+1) of the token at column x, row y is rotated by the angle

    theta_m(x, y) = x * fx_m + y * fy_m

so q_i . k_j depends on (x_j - x_i, y_j - y_i) only. Rotation happens at global
positions before any window partition, so windowed attention stays relative.
Angles and the rotation use timm's rotary helpers (``get_mixed_freqs`` builds
sin/cos for adjacent-pair layout, ``apply_rot_embed_cat`` applies them).
Axial and mixed RoPE differ only in the frequencies: see rope_axial.py and
rope_mixed.py.
"""
from typing import Optional, Sequence

import torch
from timm.layers.pos_embed_sincos import apply_rot_embed_cat, get_mixed_freqs
from torch import Tensor

from .base import Grid, PEState, PositionalEncoding


class RotaryPE(PositionalEncoding):
    """Base of the RoPE schemes. Subclasses provide ``frequencies()``.

    Args:
        blocks: Blocks that rotate q/k (default: all).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim % 4:
            raise ValueError(f'{type(self).__name__} needs head_dim divisible by 4, got '
                             f'{self.head_dim} (embed_dim {self.embed_dim} / '
                             f'{self.num_heads} heads)')
        self.blocks = sorted(self._block_set(blocks, 'blocks'))

    def frequencies(self) -> Tensor:
        """(2, depth or 1, heads or 1, head_dim // 2): x and y frequency per pair."""
        raise NotImplementedError

    def _embeds(self, grid: Grid) -> Tensor:
        freqs = self.frequencies()
        ys, xs = torch.meshgrid(torch.arange(grid[0], device=freqs.device),
                                torch.arange(grid[1], device=freqs.device), indexing='ij')
        # (depth|1, heads|1, N, 2 * head_dim): sin | cos, float32 even under autocast
        return get_mixed_freqs(freqs, xs.flatten().float(), ys.flatten().float(),
                               dtype=torch.float32)

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        state.tensors['rope'] = self._inference_cached(
            (state.grid, device), lambda: self._embeds(state.grid))
        return state

    def rotate(self, q: Tensor, k: Tensor, block: int, state: PEState):
        if block not in self.blocks:
            return q, k
        embeds = state.tensors['rope']
        emb = embeds[block if embeds.shape[0] > 1 else 0]
        n = self.num_prefix_tokens

        def rot(t: Tensor) -> Tensor:
            if n == 0:
                return apply_rot_embed_cat(t, emb)
            return torch.cat([t[:, :, :n], apply_rot_embed_cat(t[:, :, n:], emb)], dim=2)
        return rot(q), rot(k)
