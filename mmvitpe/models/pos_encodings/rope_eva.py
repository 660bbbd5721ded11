"""2D RoPE of EVA-02 (Fang et al. 2023), with its grid rescaling.

Frequencies f_m = 1 / theta^(4m / d), m < d/4 (d = head_dim, theta = 10^4).
Positions are rescaled so that any H x W grid spans the reference
(pretraining) grid (Hr, Wr), EVA's position interpolation:

    ty = y * Hr / H,   tx = x * Wr / W

Adjacent channels (2m, 2m+1) form a pair (EVA's interleaved ``rotate_half``);
the first d/4 pairs rotate by ty * f_m, the last d/4 by tx * f_m:

    out = x cos(angle) + rot(x) sin(angle),  rot(x)_(2m, 2m+1) = (-x_(2m+1), x_(2m))

on the patch tokens of q and k; prefix tokens (EVA's class token) stay
unrotated. A model fine-tuned at any grid sees the angles of its pretraining
grid's span, so EVA-02 weights run unchanged; with ``rescale=False`` positions
are integer patch indices (timm ``Eva`` without ``ref_feat_shape``).

The frequencies are timm's ``freq_bands`` (what timm's ``RotaryEmbeddingCat``
uses for ``eva02_*``); the rotation is the complex multiplication of rope.py,
with the angles of timm's grid rescaling (``ref_feat_shape``). timm's
``apply_rot_embed_cat`` computes the same from sin/cos but is slower on CPU
(README, benchmark notes). Rotation is at global positions, before
any window partition; EVA-02's detectron2 ViT instead gives its windowed
blocks a second table spanning one window (``rope_win``); that needs the
block's window size, which the rotation site does not receive, so this scheme
rotates windowed blocks like global ones (still relative within each window).

Reference: baaivision/EVA @ 5623d08bb08a8268c7bc18e1d9b8b4bd651fe4d9,
``EVA-02/asuka/rope.py`` (``VisionRotaryEmbeddingFast``) and
``EVA-02/asuka/modeling_finetune.py`` (class token left out); timm
``eva.py`` / ``pos_embed_sincos.py``.
"""
import math
import re
from typing import Optional

import torch
from timm.layers.pos_embed_sincos import freq_bands
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_bool, check_positive, check_size_pair
from .base import Grid
from .rope import RotaryPE


@POS_ENCODINGS.register_module()
class RoPEEVA02(RotaryPE):
    """EVA-02's axial RoPE with positions rescaled to a reference grid.

    Args:
        theta: Frequency base (EVA-02: 10000).
        ref_grid: (rows, cols) the positions are rescaled to; default: the
            pretraining grid (EVA-02 at 224 px / patch 14: 16 x 16).
        rescale: False for integer positions (no rescaling).
        **kwargs: See :class:`RotaryPE` (``blocks``) and :class:`PositionalEncoding`.
    """

    def __init__(self, theta: float = 10000.0, ref_grid: Optional[Grid] = None,
                 rescale: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        rescale = check_bool('RoPEEVA02', 'rescale', rescale)
        if ref_grid is not None and not rescale:
            raise ValueError('RoPEEVA02: ref_grid is set but rescale=False ignores it')
        self.theta = check_positive('RoPEEVA02', 'theta', theta)
        if ref_grid is not None:
            ref_grid = check_size_pair('RoPEEVA02', 'ref_grid', ref_grid)
        self.ref_grid = (ref_grid or self.pretrain_grid) if rescale else None
        bands = freq_bands(self.head_dim // 4, temperature=theta, step=1)
        zeros = torch.zeros_like(bands)
        # per patch of the reference grid: the first d/4 pairs turn with y, the last with x
        freqs = torch.stack([torch.cat([zeros, bands]), torch.cat([bands, zeros])])
        self.register_buffer('freqs', freqs[:, None, None], persistent=False)

    def grid_frequencies(self, grid: Grid) -> Tensor:
        """Per patch of ``grid``: a grid spans the reference grid (EVA's interpolation)."""
        if self.ref_grid is None:
            return self.freqs
        # tensor by int arithmetic: a Python float of a (symbolic) grid side would break
        # torch.compile's scalar handling under dynamic shapes
        return torch.stack([self.freqs[0] * self.ref_grid[1] / grid[1],
                            self.freqs[1] * self.ref_grid[0] / grid[0]])

    def frequencies(self) -> Tensor:
        """(2, 1, 1, d/2) radians per patch at the pretraining grid (pair m:
        channels 2m, 2m+1); with rescaling they scale as 1 / grid side."""
        return self.grid_frequencies(self.pretrain_grid)

    # EVA-02 checkpoints store the cos/sin tables of their fine-tuning grid (per
    # block too, and rope_win / rope_glb in detectron2): recomputed here, checked
    foreign_keys = re.compile(r'(^|\.)rope(_win|_glb)?\.freqs_(cos|sin)$')

    def convert_foreign(self, key, value):
        side = math.isqrt(value.shape[0]) if value.dim() == 2 else 0
        if side < 1 or side * side != value.shape[0] or value.shape[1] != self.head_dim:
            raise ValueError(f'a RoPE table of shape {tuple(value.shape)} does not fit '
                             f'RoPEEVA02 (tokens of a square grid, head_dim {self.head_dim})')
        if '_win.' not in key:  # a window table spans another grid
            rotation = self._rotations((side, side))[0][self.num_prefix_tokens:, 0]
            ours = rotation.real if key.endswith('cos') else rotation.imag
            ours = ours.repeat_interleave(2, -1)  # EVA's interleaved (d,) layout
            if not torch.allclose(ours, value.float(), atol=1e-4):
                raise ValueError(
                    f'{key}: this RoPE table ({side}x{side} tokens) is not the one RoPEEVA02 '
                    f'computes with theta={self.theta}, ref_grid={self.ref_grid}; set them to '
                    "the checkpoint's (EVA-02: theta=10000, ref_grid=(16, 16))")
        return None
