"""Operators of this package, registered with ``torch.library`` (``torch.ops.mmvitpe``)."""
from .ms_deform_attn import ms_deform_attn, multi_scale_deformable_attn

__all__ = ['ms_deform_attn', 'multi_scale_deformable_attn']
