"""PVG: position-embedding vision transformer with GAP (Lee, Ham, Kim, AAAI 2025,
"Maximizing the Position Embedding for Vision Transformers with Global Average
Pooling").

PE is added to the input as in ViT and delivered, LaPE-style, to every block
except block 0:

    x_0 = patches + pos;  pos_0 = pos
    block 0: plain;   block l >= 1: pos_l = LN'_l(pos_{l-1}),
                                    x <- x + MSA(LN_l(x) + pos_l)

The paper pools with GAP; a class token (with a PE slot) is also accepted.
"""
from mmvitpe.registry import POS_ENCODINGS
from .layerwise import LayerwisePE


@POS_ENCODINGS.register_module()
class PVG(LayerwisePE):
    """Input PE plus layer-wise PE from block 1 on."""
    first_block = 1
    add_to_input = True
