"""Bringing weights of other codebases into mmvitpe models."""
from .vit_adapter import convert_vit_adapter_backbone

__all__ = ['convert_vit_adapter_backbone']
