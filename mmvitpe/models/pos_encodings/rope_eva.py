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

The angles come from timm's live ``RotaryEmbeddingCat`` (``in_pixels=False``,
``ref_feat_shape``: how timm's ``eva02_*`` models build them) and are applied
with timm's ``apply_rot_embed_cat``. Rotation is at global positions, before
any window partition; EVA-02's detectron2 ViT instead gives its windowed
blocks a second table over one window (``rope_win``), which a rotation before
the partition cannot express: this scheme rotates windowed blocks like global
ones (still relative within each window).

Reference: baaivision/EVA @ 5623d08bb08a8268c7bc18e1d9b8b4bd651fe4d9,
``EVA-02/asuka/rope.py`` (``VisionRotaryEmbeddingFast``) and
``EVA-02/asuka/modeling_finetune.py`` (class token left out); timm
``eva.py`` / ``pos_embed_sincos.py``.
"""
import math
import re
from typing import Optional, Sequence

import torch
from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, apply_rot_embed_cat
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from .base import Grid, PEState, PositionalEncoding


@POS_ENCODINGS.register_module()
class RoPEEVA02(PositionalEncoding):
    """EVA-02's axial RoPE with positions rescaled to a reference grid.

    Args:
        theta: Frequency base (EVA-02: 10000).
        ref_grid: (rows, cols) the positions are rescaled to; default: the
            pretraining grid (EVA-02 at 224 px / patch 14: 16 x 16).
        rescale: False for integer positions (no rescaling).
        blocks: Blocks that rotate q/k (default: all).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, theta: float = 10000.0, ref_grid: Optional[Grid] = None,
                 rescale: bool = True, blocks: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim % 4:
            raise ValueError(f'RoPEEVA02 needs head_dim divisible by 4, got {self.head_dim}')
        if ref_grid is not None and not rescale:
            raise ValueError('RoPEEVA02: ref_grid is set but rescale=False ignores it')
        self.ref_grid = tuple(ref_grid or self.pretrain_grid) if rescale else None
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.rope = RotaryEmbeddingCat(self.head_dim, temperature=theta, in_pixels=False,
                                       ref_feat_shape=self.ref_grid)

    # EVA-02 checkpoints store the cos/sin tables of their fine-tuning grid (per
    # block too, and rope_win / rope_glb in detectron2): recomputed here, checked
    foreign_keys = re.compile(r'(^|\.)rope(_win|_glb)?\.freqs_(cos|sin)$')

    def convert_foreign(self, key, value):
        side = math.isqrt(value.shape[0])
        if value.dim() != 2 or side * side != value.shape[0] or value.shape[1] != self.head_dim:
            return None
        if '_win.' not in key:  # a window table spans another grid
            sin, cos = self.rope.get_embed((side, side)).chunk(2, -1)
            ours = cos if key.endswith('cos') else sin
            if not torch.allclose(ours, value.float(), atol=1e-4):
                raise ValueError(
                    f'{key}: this RoPE table ({side}x{side} tokens) is not the one RoPEEVA02 '
                    f'computes with theta={self.rope.temperature}, ref_grid={self.ref_grid}; '
                    'set them to the checkpoint\'s (EVA-02: theta=10000, ref_grid=(16, 16))')
        return None

    def _embed(self, grid: Grid) -> Tensor:
        """(prefix + H*W, 2 * head_dim): [sin | cos] per token (prefix: 0 | 1)."""
        emb = self.rope.get_embed(list(grid))
        if self.num_prefix_tokens:
            n, d = self.num_prefix_tokens, self.head_dim
            pad = torch.cat([emb.new_zeros(n, d), emb.new_ones(n, d)], -1)
            emb = torch.cat([pad, emb])
        return emb

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state = PEState(tuple(grid))
        key = (state.grid, device, self.rope.bands.dtype)  # timm keeps bands >= fp32
        state.tensors['rope'] = self._inference_cached(key, lambda: self._embed(state.grid))
        return state

    def rotate(self, qk: Tensor, block: int, state: PEState) -> Tensor:
        if block not in self.blocks:
            return qk
        return apply_rot_embed_cat(qk, state.tensors['rope'][:, None, None])

    def frequencies(self) -> Tensor:
        """(2, 1, 1, d/2) radians per patch at the pretraining grid (pair m:
        channels 2m, 2m+1); with rescaling they scale as 1 / grid side."""
        bands = self.rope.bands.float()
        rows, cols = self.pretrain_grid
        ref = self.ref_grid or self.pretrain_grid
        zeros = torch.zeros_like(bands)
        fx = torch.cat([zeros, bands * ref[1] / cols])
        fy = torch.cat([bands * ref[0] / rows, zeros])
        return torch.stack([fx, fy])[:, None, None]
