"""MPVG: PVG plus the initial PE at the last LayerNorm (Lee, Ham, Kim, AAAI 2025).

    PVG as in pvg.py, then   y = LN(x_L) + LN'_last(pos_0),   logits = Head(GAP(y))

LN'_last is one more independent LayerNorm (the paper's parameter counts show
it is not shared). MPVG is defined with GAP: a class token is rejected (register
tokens are not pooled and get no PE, so they are accepted).

Dense backbones: in ViT-Adapter the ViT's final LayerNorm is not used (the
adapter's output norms are). The "last norm" of a dense backbone here is the
norm applied to the ViT tokens where the backbone reads them out (see the
backbone's ``final_norm``); MPVG's term is added there, i.e. to the token map
that feeds the feature pyramid. This placement is our choice: the paper does
not describe its dense pipeline.
"""
from typing import Optional

from mmvitpe.registry import POS_ENCODINGS
from .layerwise import LayerwisePE


@POS_ENCODINGS.register_module()
class MPVG(LayerwisePE):
    """PVG plus ``LN'_last(pos_0)`` added after the final norm; GAP only."""
    first_block = 1
    add_to_input = True
    acts_at_final_norm = True
    supports_class_token = False

    def __init__(self, class_slot: Optional[bool] = None, **kwargs) -> None:
        if kwargs.get('num_prefix_tokens', 0) > kwargs.get('num_register_tokens', 0):
            raise ValueError('MPVG is defined with global average pooling and no class '
                             'token (Lee et al. 2025); build the model with '
                             'class_token=False, or use PVG/LaPE with a class token')
        super().__init__(class_slot=class_slot, **kwargs)
