from .vit_adapter import ADAPTER_SETTINGS, ViTAdapter
from .vit_baseline import ViTBaseline

__all__ = ['ViTAdapter', 'ViTBaseline', 'ADAPTER_SETTINGS']
