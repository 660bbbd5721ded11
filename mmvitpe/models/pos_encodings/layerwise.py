"""Shared machinery of the layer-wise PE schemes (LaPE, PVG, MPVG).

One learnable absolute table ``pos`` (resized like :class:`LearnedPE`) is
delivered to a set of blocks through a hierarchical chain of independent
LayerNorms: the k-th receiving block l gets ``pos_l = LN'_l(pos_prev)`` where
``pos_prev`` is what the previous receiving block got (``pos`` for the first).
A receiving block adds it to its normalised input of attention only:

    x <- x + MSA(LN_l(x) + pos_l);   x <- x + MLP(LN''_l(x))

The chain depends only on the grid, so it is computed once per forward (and
cached per grid in inference). The three schemes differ in which blocks receive
PE, whether ``pos`` is also added to the input, and whether a last LayerNorm of
``pos`` is added after the final norm: see lape.py, pvg.py, mpvg.py.
"""
import re
from typing import Dict, Optional, Sequence, Tuple

from torch import Tensor, nn

from mmvitpe.utils.validation import check_bool, check_positive

from .base import Grid, PEState, PositionalEncoding
from .learned import AbsoluteTable, add_to_tokens, resolve_class_slot


class LayerwisePE(PositionalEncoding):
    """Base of LaPE/PVG/MPVG; subclasses fix the class attributes.

    Args:
        blocks: Blocks that receive PE (default: the scheme's own).
        class_slot: Whether the table has class-token entries (default: yes
            iff the model has a class token).
        interpolation, antialias: How the table is resized (see LearnedPE).
        norm_eps: eps of the PE LayerNorms (1e-6, as DeiT/LaPE).
        **kwargs: See :class:`PositionalEncoding`.
    """
    first_block: int = 0          # default receiving blocks: first_block..depth-1
    add_to_input: bool = False    # x_0 = patches + pos
    acts_at_final_norm = False    # y = LN(x) + LN'_last(pos)

    def __init__(self, blocks: Optional[Sequence[int]] = None,
                 class_slot: Optional[bool] = None, interpolation: str = 'bicubic',
                 antialias: bool = False, norm_eps: float = 1e-6, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive(type(self).__name__, 'norm_eps', norm_eps)
        if blocks is None:
            blocks = range(self.first_block, self.depth)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.table = AbsoluteTable(self.embed_dim, self.pretrain_grid,
                                   resolve_class_slot(self, class_slot), interpolation,
                                   check_bool(type(self).__name__, 'antialias', antialias))
        self.norms = nn.ModuleDict({str(b): nn.LayerNorm(self.embed_dim, eps=norm_eps)
                                    for b in self.blocks})
        self.last_norm_layer = (nn.LayerNorm(self.embed_dim, eps=norm_eps)
                                if self.acts_at_final_norm else None)

    def stack_position(self, name: str) -> int:
        if name.startswith('last_norm_layer.'):
            return self.depth
        return super().stack_position(name)

    def _chain(self, grid: Grid) -> Tuple[Tensor, Dict[int, Tensor]]:
        pos = table = self.table.resized(grid)
        chain = {}
        for b in self.blocks:
            pos = self.norms[str(b)](pos)
            chain[b] = pos
        return table, chain

    def prepare(self, grid: Grid, device, dtype) -> PEState:
        grid = tuple(grid)
        table, chain = self._inference_cached((grid, device, dtype), lambda: self._chain(grid))
        return PEState(grid, tensors={'pos': table}, per_block=chain)

    def _add(self, x: Tensor, pos: Tensor) -> Tensor:
        return add_to_tokens(x, pos, self.num_prefix_tokens, self.table.num_slots)

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return self._add(x, state.tensors['pos']) if self.add_to_input else x

    def attention_input(self, x: Tensor, block: int, state: PEState) -> Tensor:
        pos = state.per_block.get(block)
        return x if pos is None else self._add(x, pos)

    # any ViT's table, and LaPE's per-block LayerNorms
    foreign_keys = re.compile(r'^(pos_embed|blocks\.\d+\.pe_norm\.(weight|bias))$')

    def convert_foreign(self, key, value):
        if key == 'pos_embed':
            return self.table.claim(value, 'table.weight')
        m = re.match(r'^blocks\.(\d+)\.pe_norm\.(weight|bias)$', key)
        if m and int(m.group(1)) in self.blocks:
            return {f'norms.{m.group(1)}.{m.group(2)}': value}
        return None

    def final(self, x: Tensor, state: PEState) -> Tensor:
        if self.last_norm_layer is None:
            return x
        return self._add(x, self.last_norm_layer(state.tensors['pos']))
