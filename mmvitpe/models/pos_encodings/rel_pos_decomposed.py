"""Decomposed relative position (MViTv2, Li et al. 2022; ViTDet, Li et al. 2022; SAM's
image encoder): per block, one learned table per axis over the relative offsets,
looked up for each query-key pair and multiplied with the query:

    A = softmax(q k^T / sqrt(d) + q . R_h[y_q - y_k] + q . R_w[x_q - x_k])

The term depends on the query (unlike RelPosBias' table bias), so it enters
attention through the ``query_terms`` site. Each block's tables have 2S-1 rows
of head_dim channels for its attention grid S: the window for a windowed block,
``global_grid`` for a global one (default the model's ``input_size`` grid; ViTDet:
64 at 1024 px). Another grid gets the tables resized linearly (align_corners=False),
as detectron2's ``get_rel_pos`` does. Tables start at zero (detectron2's
``rel_pos_zero_init``): adding the scheme to a pretrained ViT changes nothing
at step 0. Prefix tokens get no term, as queries or as keys.

detectron2 and SAM checkpoints hold the tables as ``blocks.<i>.attn.rel_pos_h``
/ ``rel_pos_w``; they load into ``tables_h.<i>`` / ``tables_w.<i>``.
"""
import re
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_size_pair
from .base import Grid, PEState, PositionalEncoding


def axis_table(table: Tensor, q_size: int, k_size: int) -> Tensor:
    """(q_size, k_size, C): the rows of a (L, C) axis table for every query/key
    position pair, the table resized to 2 * max(q_size, k_size) - 1 rows first if
    it has another length (detectron2's ``get_rel_pos``: coordinates scaled to
    the longer axis, offsets truncated to ints)."""
    length = 2 * max(q_size, k_size) - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode='linear')[0].t()
    q_coords = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


def decomposed_terms(q: Tensor, table_h: Tensor, table_w: Tensor, q_grid: Grid,
                     k_grid: Grid) -> Tensor:
    """(B, q_h*q_w, k_h*k_w): the logit term of queries ``q`` (B, q_h*q_w, C),
    unscaled, on a ``q_grid`` query grid and a ``k_grid`` key grid."""
    (qh, qw), (kh, kw) = q_grid, k_grid
    r_q = q.reshape(q.shape[0], qh, qw, q.shape[-1])
    rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, axis_table(table_h, qh, kh).to(q.dtype))
    rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, axis_table(table_w, qw, kw).to(q.dtype))
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(q.shape[0], qh * qw, kh * kw)


@POS_ENCODINGS.register_module()
class RelPosDecomposed(PositionalEncoding):
    """Learned per-axis relative position tables, multiplied with the queries.

    Args:
        blocks: Blocks with the term (default: all).
        global_grid: (h, w) the global blocks' tables are stored for (default:
            the grid of the model's ``input_size``, which defaults to its
            pretraining size). Windowed blocks store theirs for their window.
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Optional[Sequence[int]] = None,
                 global_grid: Optional[Grid] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.global_grid = (tuple(self.input_grid) if global_grid is None
                            else check_size_pair('RelPosDecomposed', 'global_grid', global_grid))
        head_dim = self.embed_dim // self.num_heads
        self.tables_h, self.tables_w = (nn.ParameterDict({
            str(b): nn.Parameter(torch.zeros(2 * side - 1, head_dim))
            for b, side in ((b, self.table_grid(b)[axis]) for b in self.blocks)})
            for axis in (0, 1))

    def table_grid(self, block: int) -> Grid:
        """The attention grid block ``block``'s tables are stored for."""
        window = self.window_sizes[block]
        return (window, window) if window else self.global_grid

    def query_terms(self, q: Tensor, block: int, attn_grid: Grid, state: PEState,
                    num_prefix: int) -> Optional[Tensor]:
        if block not in self.blocks:
            return None
        batch, heads, n, head_dim = q.shape
        patches = q[:, :, num_prefix:].reshape(batch * heads, n - num_prefix, head_dim)
        terms = decomposed_terms(patches, self.tables_h[str(block)], self.tables_w[str(block)],
                                 attn_grid, attn_grid).view(batch, heads, n - num_prefix, -1)
        return F.pad(terms, (num_prefix, 0, num_prefix, 0)) if num_prefix else terms

    # detectron2 / SAM: blocks.<i>.attn.rel_pos_h, rel_pos_w
    foreign_keys = re.compile(r'^blocks\.\d+\.attn\.rel_pos_[hw]$')

    def convert_foreign(self, key: str, value: Tensor) -> Optional[Dict[str, Tensor]]:
        block, axis = re.match(r'^blocks\.(\d+)\.attn\.rel_pos_([hw])$', key).groups()
        if int(block) not in self.blocks:
            return None
        return {f'tables_{axis}.{block}': value}

    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """Per block, the term a query of all ones gets at each offset:
        (heads=1, 2h-1, 2w-1), the sums of the two axis tables' rows."""
        maps = {}
        for b in self.blocks:
            h = self.tables_h[str(b)].sum(-1)
            w = self.tables_w[str(b)].sum(-1)
            maps[f'block{b}'] = (h[:, None] + w[None, :])[None]
        return maps
