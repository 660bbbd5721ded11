from . import pos_encodings  # noqa: F401  (registers the schemes)
from . import timm_models  # noqa: F401  (registers timm classifiers)
from .backbones import ViTAdapter, ViTBaseline
from .vit import PEViT

__all__ = ['PEViT', 'ViTAdapter', 'ViTBaseline']
