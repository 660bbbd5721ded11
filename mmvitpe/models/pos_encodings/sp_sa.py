"""SP-SA: learned 2D spatial priors that multiply the attention logits
(SP-ViT, Zhou et al., BMVC 2022).

Per head h, a small MLP of the integer 2D offset between key j and query i,
d_ij = (dx, dy) = pos_j - pos_i (in patches, x = column), gives a prior that
multiplies the scaled logits:

    SP_h(d) = b2_h + sum_m w2_hm * ReLU(W1_hm . d + b1_hm)
    A_h     = softmax( (q_h k_h^T / sqrt(d_head)) * SP_h(d_ij) )

W1, b1: Linear(2, heads * hidden) (trunc_normal 0.02, bias 0); w2 = 0 and
b2 = 1, so SP = 1 and SP-SA equals plain attention at initialisation. The
official code uses hidden = head_dim per head; the paper's ablation prefers 32.

Memory: the MLP runs on the (2h-1)(2w-1) distinct offsets only and the result is
gathered to (heads, N, N); the official code's (N, N, hidden) activation (12.9 GB
per layer at a 64x64 grid for ViT-Ti) is never built, nor an (N, N) index.
Because SP multiplies the
logits, attention cannot use the fused SDPA kernel in these blocks.
Prefix tokens get SP = 1 (the official model adds its class token only after the
SP-SA blocks). Native at any grid: the MLP extrapolates to unseen offsets.
"""
import re
from typing import Dict, Optional, Sequence

import torch
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_int
from .base import (Grid, PEState, PositionalEncoding, expand_relative_table, pad_prefix,
                   relative_offsets)


class SpatialPriorMLP(nn.Module):
    """Per-head MLP from a 2D offset to a multiplicative prior (one block's SP)."""

    def __init__(self, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.num_heads, self.hidden = num_heads, hidden
        self.w1 = nn.Linear(2, num_heads * hidden)
        self.w2 = nn.Parameter(torch.zeros(num_heads, hidden))
        self.b2 = nn.Parameter(torch.ones(num_heads))
        trunc_normal_(self.w1.weight, std=0.02)
        nn.init.zeros_(self.w1.bias)

    def forward(self, offsets: Tensor) -> Tensor:
        """(U, 2) offsets -> (heads, U) priors."""
        hidden = torch.relu(self.w1(offsets)).view(-1, self.num_heads, self.hidden)
        return (hidden * self.w2).sum(-1).t() + self.b2[:, None]


@POS_ENCODINGS.register_module()
class SPSA(PositionalEncoding):
    """Spatial-prior self-attention.

    Args:
        blocks: Blocks that use SP-SA (default: all).
        hidden: Hidden units per head (default: head_dim, as the official code).
        **kwargs: See :class:`PositionalEncoding`.
    """

    def __init__(self, blocks: Optional[Sequence[int]] = None,
                 hidden: Optional[int] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = sorted(self._block_set(blocks, 'blocks'))
        self.hidden = (self.embed_dim // self.num_heads if hidden is None
                       else check_int('SPSA', 'hidden', hidden))
        self.priors = nn.ModuleDict({str(b): SpatialPriorMLP(self.num_heads, self.hidden)
                                     for b in self.blocks})

    # official SP-ViT: w2 is (D, 1) there
    foreign_keys = re.compile(r'^blocks\.(\d+)\.attn\.(w1\.weight|w1\.bias|w2|b2)$')

    def convert_foreign(self, key, value):
        m = self.foreign_keys.match(key)
        if not m or int(m.group(1)) not in self.blocks:
            return None
        name = f'priors.{m.group(1)}.{m.group(2)}'
        own = self.state_dict()[name]
        if m.group(2) == 'w2' and value.numel() == own.numel():
            value = value.reshape(own.shape)  # another size: remap names both shapes
        return {name: value}

    def _prior_table(self, block: int, grid: Grid) -> Tensor:
        """(heads, 2h-1, 2w-1): the prior of one block at every offset of ``grid``."""
        mlp = self.priors[str(block)]
        h, w = grid
        table = mlp(relative_offsets(tuple(grid), mlp.b2.device).to(mlp.b2.dtype))
        return table.view(self.num_heads, 2 * h - 1, 2 * w - 1)

    def prior(self, block: int, attn_grid: Grid) -> Tensor:
        """(heads, N, N) multiplicative prior of one block over an attention grid."""
        return expand_relative_table(self._prior_table(block, attn_grid), attn_grid,
                                     key_minus_query=True)

    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """Each block's prior over the offsets of ``grid`` (key minus query, SP-ViT Fig. 1b)."""
        return {f'block{b}': self._prior_table(b, grid) for b in self.blocks}

    def logit_terms(self, block: int, attn_grid: Grid, state: PEState, num_prefix: int):
        if block not in self.blocks:
            return None, None
        gain = self._inference_cached((block, tuple(attn_grid)),
                                      lambda: self.prior(block, attn_grid))
        return None, pad_prefix(gain, num_prefix, 1.0)
