"""Conditional position encoding: the PEG of CPVT (Chu et al., ICLR 2023).

After chosen blocks (CPVT: after block 0), the patch tokens are reshaped to
their H x W map and

    x <- x + DWConv3x3(x)         (depthwise, zero padding, bias)

Position comes from the zero padding at the borders, so the scheme works at any
grid and with windowed attention. The conv is timm's Twins ``PosConv`` (the
reference implementation), initialised as Twins does: N(0, sqrt(2 / fan_out)),
fan_out = 9, bias 0. Prefix tokens bypass the conv.
"""
import math
import re
from typing import Sequence

import torch
from timm.models.twins import PosConv
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from .base import PEState, PositionalEncoding


@POS_ENCODINGS.register_module()
class PEG(PositionalEncoding):
    """Depthwise-conv position generator after the given blocks.

    Args:
        blocks: Block indices after which a PEG runs (default ``(0,)``, the
            CPVT placement "position 0").
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Sequence[int] = (0,), **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.convs = nn.ModuleDict({str(b): PosConv(self.embed_dim, self.embed_dim)
                                    for b in self.blocks})
        for conv in self.convs.values():
            nn.init.normal_(conv.proj[0].weight, 0, math.sqrt(2.0 / 9))
            nn.init.zeros_(conv.proj[0].bias)

    # CPVT/Twins: the k-th PEG (in block order); SP-ViT: the PosCNN inside block i
    foreign_keys = re.compile(
        r'^(pos_block\.(\d+)|blocks\.(\d+)\.pos_block)\.proj\.0\.(weight|bias)$')

    def convert_foreign(self, key, value):
        m = self.foreign_keys.match(key)
        kth, block, name = m.group(2), m.group(3), m.group(4)
        if kth is not None and int(kth) < len(self.blocks):
            block = self.blocks[int(kth)]
        elif kth is not None or int(block) not in self.blocks:
            return None
        return {f'convs.{block}.proj.0.{name}': value}

    def after_block(self, x: Tensor, block: int, state: PEState) -> Tensor:
        conv = self.convs[str(block)] if block in self.blocks else None
        if conv is None:
            return x
        prefix, patches = self._split_prefix(x)
        return torch.cat([prefix, conv(patches, state.grid)], dim=1)
