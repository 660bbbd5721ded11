"""EoMT: learned queries in the last blocks of the PE-pluggable ViT, its
mask-classification loss, and its mmseg / mmdet heads."""
from .model import EoMT, ScaleBlock, mask_probability

__all__ = ['EoMT', 'ScaleBlock', 'mask_probability']
