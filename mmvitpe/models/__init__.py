from . import pos_encodings  # noqa: F401  (registers the schemes)
from .vit import PEViT

__all__ = ['PEViT']
