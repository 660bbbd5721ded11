"""No positional encoding (the ViT paper's "no PE" ablation, Dosovitskiy et al. 2021, App. D.4).

Without any PE a transformer is permutation-equivariant over patch tokens.
"""
from mmvitpe.registry import POS_ENCODINGS
from .base import PositionalEncoding


@POS_ENCODINGS.register_module()
class NoPE(PositionalEncoding):
    """Every site is the identity."""
