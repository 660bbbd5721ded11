"""LaPE: layer-adaptive position embedding with independent LayerNorms
(Yu et al., ICCV 2023; reference code github.com/Ingrid725/LaPE).

No PE at the input; every block l = 0..L-1 gets its own LayerNorm of the
previous block's PE:

    w_{-1} = pos,  w_l = LN_w|l(w_{l-1})
    x <- x + MSA(LN_l(x) + w_l);  x <- x + MLP(LN'_l(x))

The reference model uses a class token with a PE slot (the default here when
the model has a class token); GAP works too. See layerwise.py for the chain.
"""
from mmvitpe.registry import POS_ENCODINGS
from .layerwise import LayerwisePE


@POS_ENCODINGS.register_module()
class LaPE(LayerwisePE):
    """PE delivered to every block through a chain of independent LayerNorms."""
    first_block = 0
    add_to_input = False
