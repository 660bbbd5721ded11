from .attention import Attention
from .block import Block
from .arch import ARCH_SETTINGS, resolve_arch
from .vision_transformer import PEViT

__all__ = ['Attention', 'Block', 'PEViT', 'ARCH_SETTINGS', 'resolve_arch']
