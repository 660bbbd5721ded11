from .attention import Attention
from .block import Block
from .vision_transformer import ARCH_SETTINGS, PEViT, resolve_arch

__all__ = ['Attention', 'Block', 'PEViT', 'ARCH_SETTINGS', 'resolve_arch']
