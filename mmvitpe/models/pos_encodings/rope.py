"""Shared machinery of 2D rotary position embeddings (RoPE-ViT, Heo et al., ECCV 2024).

Each head's q and k (patch tokens only) are rotated pairwise: channel pair
(2m, 2m+1) of the token at column x, row y is rotated by the angle

    theta_m(x, y) = x * fx_m + y * fy_m

so q_i . k_j depends on (x_j - x_i, y_j - y_i) only. Rotation happens at global
positions before any window partition, so windowed attention stays relative.
Each pair is one complex number multiplied by exp(i theta), as rope-vit does,
in fp32 even under autocast; while compiling or exporting the same product is
written out on real (cos, sin) pairs instead (``_real_rotations``). timm's ``apply_rot_embed_cat`` computes the same
with interleaved sin/cos; it is not used because it is slower on CPU (README,
benchmark notes). Axial and mixed RoPE differ only in the frequencies: see
rope_axial.py and rope_mixed.py.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Grid, PEState, PositionalEncoding, memo_off, rotation_dtype


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

    def grid_frequencies(self, grid: Grid) -> Tensor:
        """``frequencies()`` in effect at ``grid``: the same at every grid unless
        positions are rescaled to a reference grid (EVA-02)."""
        return self.frequencies()

    def _axis_angles(self, grid: Grid, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """Per row and per column: (depth|1, length, heads|1, d/2) angles y fy, x fx."""
        freqs = self.grid_frequencies(grid).to(dtype)

        def axis(length: int, f: Tensor) -> Tensor:
            return torch.arange(length, device=f.device, dtype=dtype)[:, None, None] * f[:, None]
        return axis(grid[0], freqs[1]), axis(grid[1], freqs[0])

    def _rotations(self, grid: Grid, dtype: torch.dtype = torch.float32) -> Tuple[Tensor, ...]:
        """Per block (or one shared): (N, heads|1, head_dim/2) complex exp(i theta)
        of real part ``dtype``, with rotation 1 for prefix tokens.

        exp(i (x fx + y fy)) = exp(i x fx) * exp(i y fy): the two factors are
        computed per column and per row only, so the H*W*depth*d/2 angles need
        no sin/cos nor its backward.
        """
        rows, cols = (torch.polar(torch.ones_like(a), a) for a in self._axis_angles(grid, dtype))
        rotations = (rows[:, :, None] * cols[:, None]).flatten(1, 2)
        if self.num_prefix_tokens:
            rotations = F.pad(rotations, (0, 0, 0, 0, self.num_prefix_tokens, 0), value=1)
        return rotations.unbind(0)

    def _real_rotations(self, grid: Grid, dtype: torch.dtype = torch.float32
                        ) -> Tuple[Tensor, ...]:
        """:meth:`_rotations` as (N, heads|1, head_dim/2, 2) real (cos, sin) pairs,
        the same product of the row and column factors written out: for
        ``torch.compile`` and the exporters (ONNX has no complex numbers,
        inductor no complex kernels)."""
        rows, cols = self._axis_angles(grid, dtype)
        cy, sy = rows.cos()[:, :, None], rows.sin()[:, :, None]
        cx, sx = cols.cos()[:, None], cols.sin()[:, None]
        cos, sin = ((cy * cx - sy * sx).flatten(1, 2), (cy * sx + sy * cx).flatten(1, 2))
        if self.num_prefix_tokens:
            pad = (0, 0, 0, 0, self.num_prefix_tokens, 0)
            cos, sin = F.pad(cos, pad, value=1.), F.pad(sin, pad, value=0.)
        return torch.stack([cos, sin], -1).unbind(0)

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state, work = PEState(tuple(grid)), rotation_dtype(dtype)
        if memo_off():  # compiling or exporting: the real-valued path, no memo
            state.tensors['rope'] = self._real_rotations(state.grid, work)
        else:
            state.tensors['rope'] = self._inference_cached(
                (state.grid, device, work), lambda: self._rotations(state.grid, work))
        return state

    def rotate(self, qk: Tensor, block: int, state: PEState) -> Tensor:
        if block not in self.blocks:
            return qk
        rotations = state.tensors['rope']
        rotation = rotations[block if len(rotations) > 1 else 0]
        b, n, _, heads, d = qk.shape
        pairs = qk.to(rotation_dtype(qk.dtype)).reshape(b, n, 2, heads, d // 2, 2)
        if rotation.is_complex():
            return torch.view_as_real(torch.view_as_complex(pairs) * rotation[:, None]
                                      ).flatten(-2).to(qk.dtype)
        cos, sin = rotation[:, None].unbind(-1)
        x, y = pairs.unbind(-1)
        return torch.stack([x * cos - y * sin, x * sin + y * cos], -1).flatten(-2).to(qk.dtype)
