"""Shared machinery of 2D rotary position embeddings (RoPE-ViT, Heo et al., ECCV 2024).

Each head's q and k (patch tokens only) are rotated pairwise: channel pair
(2m, 2m+1) of the token at column x, row y is rotated by the angle

    theta_m(x, y) = x * fx_m + y * fy_m

so q_i . k_j depends on (x_j - x_i, y_j - y_i) only. Rotation happens at global
positions before any window partition, so windowed attention stays relative.
Each pair is one complex number multiplied by exp(i theta), as rope-vit does,
in fp32 even under autocast. timm's ``apply_rot_embed_cat`` computes the same
with interleaved sin/cos, but is 7x (forward) and 3x (forward+backward) slower
on CPU at ViT-Ti/512 sizes, measured. Axial and mixed RoPE differ only in the
frequencies: see rope_axial.py and rope_mixed.py.
"""
from typing import Optional, Sequence

import torch
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

    def _rotations(self, grid: Grid) -> Tensor:
        """(depth|1, heads|1, H*W, head_dim/2) complex exp(i theta), float32."""
        freqs = self.frequencies().float()
        ys, xs = torch.meshgrid(torch.arange(grid[0], device=freqs.device),
                                torch.arange(grid[1], device=freqs.device), indexing='ij')
        xs, ys = xs.reshape(-1, 1).float(), ys.reshape(-1, 1).float()
        angles = xs * freqs[0][..., None, :] + ys * freqs[1][..., None, :]
        return torch.polar(torch.ones_like(angles), angles)

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        state.tensors['rope'] = self._inference_cached(
            (state.grid, device), lambda: self._rotations(state.grid))
        return state

    def rotate(self, q: Tensor, k: Tensor, block: int, state: PEState):
        if block not in self.blocks:
            return q, k
        rotations = state.tensors['rope']
        rotation = rotations[block if rotations.shape[0] > 1 else 0]
        n = self.num_prefix_tokens

        def rot(t: Tensor) -> Tensor:
            pairs = torch.view_as_complex(t[:, :, n:].float().reshape(*t.shape[:2], -1,
                                                                      self.head_dim // 2, 2))
            rotated = torch.view_as_real(pairs * rotation).flatten(-2).to(t.dtype)
            return torch.cat([t[:, :, :n], rotated], dim=2) if n else rotated
        return rot(q), rot(k)
