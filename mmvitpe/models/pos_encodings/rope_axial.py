"""2D RoPE, axial (RoPE-ViT "RoPE-Axial", Heo et al., ECCV 2024).

Fixed frequencies w_m = 1 / theta^(4m / d), m = 0..d/4-1, theta = 100: the first
d/2 channels (d/4 pairs) rotate with the column x, the last d/2 with the row y:

    angle = [x * w, y * w]

Nothing is learned; the rotation is exact at any grid (see rope.py).
"""
import torch
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_positive
from .rope import RotaryPE


@POS_ENCODINGS.register_module()
class RoPEAxial(RotaryPE):
    """Axial 2D RoPE with fixed frequencies.

    Args:
        theta: Frequency base (100 in RoPE-ViT).
        **kwargs: See :class:`RotaryPE`.
    """

    def __init__(self, theta: float = 100.0, **kwargs) -> None:
        super().__init__(**kwargs)
        theta = check_positive('RoPEAxial', 'theta', theta)
        d = self.head_dim
        w = 1.0 / theta ** (torch.arange(0, d, 4)[:d // 4].float() / d)
        zeros = torch.zeros_like(w)
        freqs = torch.stack([torch.cat([w, zeros]), torch.cat([zeros, w])])
        self.register_buffer('freqs', freqs[:, None, None, :], persistent=False)

    def frequencies(self) -> Tensor:
        return self.freqs
