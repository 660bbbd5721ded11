from .attention import Attention
from .block import Block
from .arch import ARCH_SETTINGS, resolve_arch
from .vision_transformer import PEViT, tokens_to_map

__all__ = ['Attention', 'Block', 'PEViT', 'ARCH_SETTINGS', 'resolve_arch']
