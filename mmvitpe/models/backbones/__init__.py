from .dense import DenseViT
from .dinov3_adapter import DINOv3Adapter
from .sta import STA
from .vit_adapter import ADAPTER_SETTINGS, ViTAdapter
from .vit_baseline import ViTBaseline
from .vitdet import VITDET_SETTINGS, LastLevelMaxPool, ViTDet

__all__ = ['DenseViT', 'DINOv3Adapter', 'STA', 'ViTAdapter', 'ViTBaseline', 'ViTDet', 'LastLevelMaxPool',
           'ADAPTER_SETTINGS', 'VITDET_SETTINGS']
