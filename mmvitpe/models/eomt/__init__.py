"""EoMT: learned queries in the last blocks of the PE-pluggable ViT, its
mask-classification loss, and its mmseg / mmdet heads."""
from .heads import EoMTInstanceHead, EoMTSegHead
from .loss import MaskClassificationLoss
from .model import EoMT, Predictions, ScaleBlock, mask_probability

__all__ = ['EoMT', 'EoMTInstanceHead', 'EoMTSegHead', 'MaskClassificationLoss', 'Predictions',
           'ScaleBlock', 'mask_probability']
