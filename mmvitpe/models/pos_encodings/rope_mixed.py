"""2D RoPE, mixed (RoPE-ViT "RoPE-Mixed", Heo et al., ECCV 2024).

Learnable frequencies per block and head: pair m of head h in block l rotates by

    angle = x * fx[l, h, m] + y * fy[l, h, m]

initialised as in RoPE-ViT (timm ``init_random_2d_freqs``): magnitudes
1 / theta^(4m/d), theta = 10, each head's (fx, fy) rotated by a random angle.
Parameter ``freqs`` has shape (2, depth, heads, head_dim/2) and belongs in the
no-weight-decay set; being one tensor for all blocks, layer-wise lr decay
counts it as a shared table (layer 0). Native at any grid (see rope.py).
"""
import re

from timm.layers.pos_embed_sincos import init_random_2d_freqs
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_positive
from .rope import RotaryPE


@POS_ENCODINGS.register_module()
class RoPEMixed(RotaryPE):
    """Mixed 2D RoPE with learnable per-block, per-head frequencies.

    Args:
        theta: Base of the initial magnitudes (10 in RoPE-ViT).
        **kwargs: See :class:`RotaryPE`.
    """

    def __init__(self, theta: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        theta = check_positive('RoPEMixed', 'theta', theta)
        self.freqs = nn.Parameter(init_random_2d_freqs(
            self.head_dim, self.depth, self.num_heads, temperature=theta))

    # rope-vit (2, depth, heads * d/2) or timm (2, depth, heads, d/2; ``rope.freqs`` in Eva)
    foreign_keys = re.compile(r'^(rope\.)?freqs$')
    # rope-vit's mixed models store their token positions as buffers
    recomputed_keys = re.compile(r'^freqs_t_[xy]$')

    def convert_foreign(self, key, value):
        if value.numel() != self.freqs.numel():
            raise ValueError(f'frequencies of shape {tuple(value.shape)} do not fit RoPEMixed '
                             f'freqs {tuple(self.freqs.shape)} (depth {self.depth}, '
                             f'{self.num_heads} heads, head_dim {self.head_dim})')
        return {'freqs': value.reshape(self.freqs.shape)}

    def frequencies(self) -> Tensor:
        return self.freqs
