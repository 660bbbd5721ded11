from . import pos_encodings  # noqa: F401  (registers the schemes)
from . import timm_models  # noqa: F401  (registers timm classifiers)
from .backbones import STA, DenseViT, DINOv3Adapter, ViTAdapter, ViTBaseline, ViTDet
from .eomt import EoMT
from .vit import PEViT

__all__ = ['DenseViT', 'DINOv3Adapter', 'EoMT', 'PEViT', 'STA', 'ViTAdapter', 'ViTBaseline',
           'ViTDet']
