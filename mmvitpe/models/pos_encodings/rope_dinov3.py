"""2D RoPE of DINOv3 (Siméoni et al. 2025).

Patch centres get coordinates in [-1, 1]: for an H x W grid

    cy = 2 (y + 1/2) / Hn - 1,   cx = 2 (x + 1/2) / Wn - 1

with (Hn, Wn) = (H, W) (``normalize_coords='separate'``), (min, min) or (max,
max) of H, W. Periods p_k = base^(2k / (d/2)), k < d/4 (or log-spaced from
``min_period`` to ``max_period``), d = head_dim. Channel i < d/2 is paired with
channel i + d/2 (the rotate-half layout) and rotated by

    angle_i = 2 pi cy / p_i (i < d/4),   2 pi cx / p_(i - d/4) (d/4 <= i < d/2)

    out = x cos(angle) + rotate_half(x) sin(angle),  rotate_half(x) = [-x2, x1]
in float32 (as DINOv3's released models, ``pos_embed_rope_dtype='fp32'``; float64 in a
``.double()`` model),
on the patch tokens of q and k; prefix tokens stay unrotated. The angles are
recomputed for every grid: exact at any size. Rotation is at global positions
before any window partition (windows stay relative).

Training-time augmentation (only in ``train()`` mode, drawn once per forward
from torch's global RNG in DINOv3's order, so ``torch.manual_seed`` reproduces
it): ``shift_coords`` s adds U(-s, s) per axis, ``jitter_coords`` J multiplies
each axis by a log-uniform factor in [1/J, J], ``rescale_coords`` R both axes by
one in [1/R, R].

``periods`` is a persistent buffer as in DINOv3's checkpoints
(``rope_embed.periods``, loaded as stored; the released ones hold
bfloat16-rounded values).

Reference: facebookresearch/dinov3 @ 6876159a11b4df116f30f667f8c9888617df0751,
``dinov3/layers/rope_position_encoding.py`` (``RopePositionEmbedding``) and
``dinov3/layers/attention.py`` (``SelfAttention.apply_rope``); timm's port is
``RotaryEmbeddingDinoV3`` (non-persistent periods, coordinate augmentation in
private helpers), so only its public coordinate helper is reused.
"""
import math
import re
from typing import Optional, Sequence

import torch
from timm.layers.pos_embed_sincos import make_coords_dinov3
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_positive, check_real
from .base import Grid, PEState, PositionalEncoding, memo_off, rotation_dtype

NORMALIZE_COORDS = ('separate', 'min', 'max')
# Largest shift / jitter / rescale of the [-1, 1] coordinates: far beyond it float32
# angles lose their precision (rotations become noise) or overflow (NaN features).
MAX_COORD_AUGMENTATION = 100.


@POS_ENCODINGS.register_module()
class RoPEDINOv3(PositionalEncoding):
    """DINOv3's axial RoPE on normalised patch-centre coordinates.

    Args:
        base: Period base (DINOv3: 100); give either it or both periods.
        min_period, max_period: Log-spaced periods instead of ``base``.
        normalize_coords: 'separate' | 'min' | 'max'.
        shift_coords, jitter_coords, rescale_coords: Training-time
            coordinate augmentation (None: off), at most
            :data:`MAX_COORD_AUGMENTATION`; DINOv3's released models
            were trained with ``rescale_coords=2``.
        blocks: Blocks that rotate q/k (default: all).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, base: Optional[float] = 100.0, min_period: Optional[float] = None,
                 max_period: Optional[float] = None, normalize_coords: str = 'separate',
                 shift_coords: Optional[float] = None, jitter_coords: Optional[float] = None,
                 rescale_coords: Optional[float] = None,
                 blocks: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim % 4:
            raise ValueError(f'RoPEDINOv3 needs head_dim divisible by 4, got {self.head_dim}')
        both = min_period is not None and max_period is not None
        if (base is None) == (not both) or (min_period is None) != (max_period is None):
            raise ValueError('RoPEDINOv3: give either base or both min_period and max_period; '
                             f'got base={base}, min_period={min_period}, '
                             f'max_period={max_period}')
        if normalize_coords not in NORMALIZE_COORDS:
            raise ValueError(f'RoPEDINOv3: normalize_coords={normalize_coords!r}; valid: '
                             f'{NORMALIZE_COORDS}')
        if base is not None:
            base = check_positive('RoPEDINOv3', 'base', base)
        else:
            min_period, max_period = (check_positive('RoPEDINOv3', name, value) for name, value
                                      in (('min_period', min_period), ('max_period', max_period)))
            if min_period > max_period:
                raise ValueError(f'RoPEDINOv3: min_period={min_period} is larger than '
                                 f'max_period={max_period}')
        for name, value, low in (('shift_coords', shift_coords, 0.),
                                 ('jitter_coords', jitter_coords, 1.),
                                 ('rescale_coords', rescale_coords, 1.)):
            if value is not None:
                check_real('RoPEDINOv3', name, value, low=low, high=MAX_COORD_AUGMENTATION)
        self.normalize_coords = normalize_coords
        self.shift_coords, self.jitter_coords = shift_coords, jitter_coords
        self.rescale_coords = rescale_coords
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        n = self.head_dim // 4
        if both:  # log-spaced from min_period to max_period, in DINOv3's operation order
            ratio = max_period / min_period
            periods = ratio ** torch.linspace(0, 1, n) / ratio * max_period
        else:
            periods = base ** (2 * torch.arange(n).float() / (self.head_dim // 2))
        # float32 periods and angles (NaN features where one overflows), in Python floats:
        # a model may be built on the meta device, whose tensors hold no values
        if both:
            log_smallest, log_largest = math.log(min_period), math.log(max_period)
        else:  # base ** (2k / (head_dim / 2)), k = 0 .. n-1
            log_smallest, log_largest = 0., 2 * (n - 1) / (self.head_dim // 2) * math.log(base)
        largest_coord = (1 + (shift_coords or 0)) * (jitter_coords or 1) * (rescale_coords or 1)
        log_largest_angle = math.log(2 * math.pi * largest_coord) - log_smallest
        float32 = torch.finfo(torch.float32)
        # DINOv3's order computes max_period / min_period first
        if not (math.log(float32.tiny) < log_smallest
                and max(log_largest, log_largest - log_smallest, log_largest_angle)
                < math.log(float32.max)):
            raise ValueError(f'RoPEDINOv3: base={base}, min_period={min_period}, max_period='
                             f'{max_period} give periods e^{log_smallest:.3g} .. '
                             f'e^{log_largest:.3g} and angles up to e^{log_largest_angle:.3g}: '
                             'beyond float32 (DINOv3: base=100)')
        self.register_buffer('periods', periods, persistent=True)

    foreign_keys = re.compile(r'^rope_embed\.periods$')

    def convert_foreign(self, key, value):
        return {'periods': value}

    def _augmented(self) -> bool:
        return self.training and any(v is not None for v in (
            self.shift_coords, self.jitter_coords, self.rescale_coords))

    def _cos_sin(self, grid: Grid, dtype: torch.dtype = torch.float32) -> Tensor:
        """(2, prefix + H*W, 1, head_dim/2): cos and sin of each token's angle per
        pair (prefix tokens: 1 and 0)."""
        device = self.periods.device
        coords = make_coords_dinov3(*grid, normalize_coords=self.normalize_coords,
                                    device=device)  # (HW, 2): (cy, cx)
        if self._augmented():  # DINOv3's draws, in its order, on its device and dtype
            dd = dict(device=device, dtype=coords.dtype)
            if self.shift_coords is not None:
                coords = coords + torch.empty(2, **dd).uniform_(-self.shift_coords,
                                                                 self.shift_coords)
            if self.jitter_coords is not None:
                log_j = math.log(self.jitter_coords)
                coords = coords * torch.empty(2, **dd).uniform_(-log_j, log_j).exp()
            if self.rescale_coords is not None:
                log_r = math.log(self.rescale_coords)
                coords = coords * torch.empty(1, **dd).uniform_(-log_r, log_r).exp()
        angles = (2 * math.pi * coords.to(dtype)[:, :, None]
                  / self.periods.to(dtype))  # (HW, 2, d/4)
        angles = angles.flatten(1)  # (HW, d/2): y, then x
        cos_sin = torch.stack([angles.cos(), angles.sin()])
        if self.num_prefix_tokens:
            prefix = torch.tensor([1.0, 0.0], device=device, dtype=dtype)[:, None, None]
            cos_sin = torch.cat([prefix.expand(2, self.num_prefix_tokens, angles.shape[1]),
                                 cos_sin], dim=1)
        return cos_sin[:, :, None]

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        state, work = PEState(tuple(grid)), rotation_dtype(dtype)
        if self._augmented() or memo_off():
            state.tensors['rope'] = self._cos_sin(state.grid, work)
        else:  # the buffer is not a parameter: its version joins the memo key
            key = (state.grid, device, work, self.periods._version, self.periods.data_ptr())
            state.tensors['rope'] = self._inference_cached(
                key, lambda: self._cos_sin(state.grid, work))
        return state

    def rotate(self, qk: Tensor, block: int, state: PEState) -> Tensor:
        """[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin] on the two channel halves.

        By hand on the halves: timm's ``apply_rot_embed(half=True)`` (full-width
        sin/cos and ``rope_rotate_half``) computes the same with more full-width
        passes, and the complex product rope.py uses needs each pair's channels
        adjacent, which here costs a transposing copy; both were slower on CPU.
        """
        if block not in self.blocks:
            return qk
        cos, sin = state.tensors['rope'][:, :, None]  # (N, 1, 1, d/2) each
        x1, x2 = qk.to(rotation_dtype(qk.dtype)).chunk(2, -1)
        return torch.cat([torch.addcmul(x1 * cos, x2, sin, value=-1),
                          torch.addcmul(x2 * cos, x1, sin)], -1).to(qk.dtype)

    def frequencies(self) -> Tensor:
        """(2, 1, 1, d/2) radians per patch at the pretraining grid (pair i: channels
        i and i + d/2); they scale as 1 / grid side, the coordinates being normalised."""
        h, w = self.pretrain_grid
        side = {'separate': (h, w), 'min': (min(h, w),) * 2, 'max': (max(h, w),) * 2}
        rows, cols = side[self.normalize_coords]
        per_coord = 2 * math.pi / self.periods.float() * 2  # d angle / d patch x side
        zeros = torch.zeros_like(per_coord)
        fx = torch.cat([zeros, per_coord / cols])
        fy = torch.cat([per_coord / rows, zeros])
        return torch.stack([fx, fy])[:, None, None]
