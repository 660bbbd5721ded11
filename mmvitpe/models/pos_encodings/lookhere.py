"""LookHere: directed attention heads (Fuller et al., NeurIPS 2024).

Each head looks in one 2D direction: keys outside its field of view are masked,
and the keys it sees are penalised linearly in their Euclidean distance (in
patches) from the query, with a slope per head and per block:

    A_lh = softmax(q k^T / sqrt(d) - g * s_l * m_h * D(d_ij) - inf * [d_ij outside FOV_h])

d_ij = pos_j - pos_i (key minus query; x = column, y = row, "up" = smaller y),
D = |d| (``distance='linear'``), sqrt |d| or |d|^2; g the global slope, s_l
linear from ``layer_slopes[0]`` (block 0) to ``layer_slopes[1]`` (last block),
m_h the head slopes of the official code: 2^-(1 + h // 4) for directed heads,
(1/4, 1/16, 1/64, 1/256), each for a quarter of the heads, for the 'none' and
'zero*' presets. The query always sees itself, so no row is fully masked.

Fields of view (``directions``, the official short-hands; heads take them in
turn, h % 4): 'halves' (180 degrees: up, down, left, right), 'corners' (90,
quadrants), 'triangles' (90, cones: |dx| <= -dy for up), 'diagonals' (180,
two adjacent cones), 'eighths1' / 'eighths2' (45, half a cone), 'none' (no mask:
distance only), 'zero' (nothing), 'zerohalves', 'zerocorners', 'zerotriangles'
(masks without the distance term). The official 'center' head (distance to
the image centre) is not offered: it is absolute, not relative. Only the
official code's default ``fill_with='inf'`` is offered.

The official code needs a multiple of 4 heads (or 6/12/16 with two-part
direction strings, not offered here); with another count the directions are
dealt out in turn and some stay unused (ViT-Ti's 3 heads look up, down and
left with 'halves').

Nothing is learned; the term depends on offsets only: exact at any grid and in
any window (the grid is the window's). Prefix tokens get zero bias, as the
official class token. Masked pairs get -inf (official: -bfloat16 max, the same
after softmax); the official bias is stored in bfloat16, ours in float32.

Reference: GreenCUBIC/lookhere @ 641deab8c6610b6480a5c564a9a34a29bf934574,
``lookhere.py`` ``create_lh_bias_tensor`` / ``create_lh_layer_tensor``;
written by hand (no library has it) on the (2h-1)(2w-1) offsets, where the
official code builds (heads, N, N) float64 arrays with a Python loop over
the N queries.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_real
from .alibi_2d import FixedLogitBias
from .base import Grid

# per head (in turn): the masks it applies; a head sees a key only where no mask hides it
DIRECTIONS = {
    'none': [()] * 4,
    'zero': [('zero',)] * 4,
    'halves': [('up',), ('down',), ('left',), ('right',)],
    'corners': [('up', 'left'), ('up', 'right'), ('down', 'left'), ('down', 'right')],
    'triangles': [('tri_up',), ('tri_down',), ('tri_left',), ('tri_right',)],
    'diagonals': [('diag_up_right',), ('diag_up_left',), ('diag_down_right',),
                  ('diag_down_left',)],
    'eighths1': [('tri_up', 'left'), ('tri_down', 'left'), ('tri_left', 'up'),
                 ('tri_right', 'up')],
    'eighths2': [('tri_up', 'right'), ('tri_down', 'right'), ('tri_left', 'down'),
                 ('tri_right', 'down')],
    'zerohalves': [('zero', d) for d in ('up', 'down', 'left', 'right')],
    'zerocorners': [('zero', 'up', 'left'), ('zero', 'up', 'right'), ('zero', 'down', 'left'),
                    ('zero', 'down', 'right')],
    'zerotriangles': [('zero', d) for d in ('tri_up', 'tri_down', 'tri_left', 'tri_right')],
}
DISTANCES = ('linear', 'sqrt', 'square')


def _visible(atom: str, dx: Tensor, dy: Tensor) -> Tensor:
    """Where a head with this one atom sees the key (offsets key minus query)."""
    cones = {'up': dy <= -dx.abs(), 'down': dy >= dx.abs(),
             'left': -dx >= dy.abs(), 'right': dx >= dy.abs()}
    if atom.startswith('tri_'):
        return cones[atom[4:]]
    if atom.startswith('diag_'):
        first, second = atom.split('_')[1:]
        return cones[first] | cones[second]
    return {'up': dy <= 0, 'down': dy >= 0, 'left': dx <= 0, 'right': dx >= 0}[atom]


@POS_ENCODINGS.register_module()
class LookHere(FixedLogitBias):
    """Directed-attention masks and distance penalties per head.

    Args:
        directions: Field-of-view preset (see the module docstring); default
            'halves' (LookHere-180).
        global_slope: g (>= 0), scales every penalty.
        layer_slopes: (s of block 0, s of the last block), each >= 0, linear in between.
        distance: 'linear' | 'sqrt' | 'square' of the Euclidean distance.
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, directions: str = 'halves', global_slope: float = 1.0,
                 layer_slopes: Tuple[float, float] = (1.0, 1.0), distance: str = 'linear',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if directions not in DIRECTIONS:
            raise ValueError(f'LookHere: directions={directions!r}; valid: {sorted(DIRECTIONS)}')
        if distance not in DISTANCES:
            raise ValueError(f'LookHere: distance={distance!r}; valid: {DISTANCES}')
        if not isinstance(layer_slopes, (list, tuple)) or len(layer_slopes) != 2:
            raise TypeError(f'LookHere: layer_slopes={layer_slopes!r} must be a pair '
                            '(first, last) of numbers')
        self.directions, self.distance = directions, distance
        self.global_slope = check_real('LookHere', 'global_slope', global_slope, low=0.)
        self.layer_slopes = tuple(check_real('LookHere', f'layer_slopes[{i}]', s, low=0.)
                                  for i, s in enumerate(layer_slopes))
        self.head_masks = [DIRECTIONS[directions][h % 4] for h in range(self.num_heads)]
        if directions.startswith(('none', 'zero')):
            # official: each of the four slopes repeated heads/4 times
            group = torch.arange(self.num_heads) // max(self.num_heads // 4, 1)
            head = 4.0 ** -(1 + group.clamp(max=3)).float()
        else:
            head = 2.0 ** -(1 + torch.arange(self.num_heads) // 4).float()
        layer = torch.linspace(*self.layer_slopes, self.depth)
        # (depth, heads): g * s_l * m_h
        # inf times the zero distance to itself would be NaN. Checked in Python floats
        # (the head factors are at most 1/2): on the meta device tensors hold no values
        if self.global_slope * max(self.layer_slopes) / 2 > torch.finfo(torch.float32).max:
            raise ValueError(f'LookHere: global_slope={global_slope} times layer_slopes='
                             f'{self.layer_slopes} overflows float32')
        self.register_buffer('slopes', self.global_slope * layer[:, None] * head[None],
                             persistent=False)

    def offset_table(self, block: int, grid: Grid) -> Tensor:
        """(heads, 2h-1, 2w-1) over offsets (key minus query); -inf outside each FOV."""
        h, w = grid
        dist = self._distances(grid)
        dist = {'linear': dist, 'sqrt': dist.sqrt(), 'square': dist.square()}[self.distance]
        dy, dx = torch.meshgrid(torch.arange(-(h - 1), h, device=dist.device),
                                torch.arange(-(w - 1), w, device=dist.device), indexing='ij')
        tables = []
        for head, masks in enumerate(self.head_masks):
            penalty = torch.zeros_like(dist) if 'zero' in masks else dist
            table = -self.slopes[block, head].float() * penalty
            seen = torch.ones_like(dist, dtype=torch.bool)
            for atom in masks:
                if atom != 'zero':
                    seen = seen & _visible(atom, dx, dy)  # out of place: traceable
            tables.append(table.masked_fill(~seen, float('-inf')))
        return torch.stack(tables)

    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """Each block's term over the offsets of ``grid``; NaN where a head does not look."""
        maps = {f'block{b}': self.offset_table(b, grid) for b in self.blocks}
        return {k: m.masked_fill(m.isneginf(), float('nan')) for k, m in maps.items()}
