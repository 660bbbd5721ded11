"""Positional-encoding schemes, one per file, behind one interface (base.py).

Build one with :func:`build_pos_encoding`; the type names are the class names.
"""
from mmvitpe.registry import POS_ENCODINGS
from .alibi_2d import ALiBi2D
from .base import Grid, PEState, PositionalEncoding
from .factorized import FactorizedPE
from .layerwise import LayerwisePE
from .lape import LaPE
from .learned import LearnedPE
from .lookhere import LookHere
from .mpvg import MPVG
from .none import NoPE
from .peg import PEG
from .pvg import PVG
from .rel_pos_bias import RelPosBias
from .rope import RotaryPE
from .rope_axial import RoPEAxial
from .rope_dinov3 import RoPEDINOv3
from .rope_eva import RoPEEVA02
from .rope_mixed import RoPEMixed
from .sincos import SinCosPE
from .sp_sa import SPSA


def build_pos_encoding(cfg: dict, **context) -> PositionalEncoding:
    """Build the scheme ``cfg['type']`` with the model's context.

    Args:
        cfg: ``dict(type=<scheme>, **scheme_args)``.
        **context: embed_dim, num_heads, depth, num_prefix_tokens and
            pretrain_grid, supplied by the transformer.

    Raises:
        ValueError: for an unknown type, naming the valid ones.
        TypeError: for an argument the scheme does not take.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'pos_embed must be a dict with a "type" key, got {cfg!r}; '
                         f'valid types: {sorted(POS_ENCODINGS.module_dict)}')
    args = dict(cfg)
    name = args.pop('type')
    scheme = POS_ENCODINGS.module_dict.get(name)
    if scheme is None:
        raise ValueError(f'unknown positional encoding type {name!r}; valid types: '
                         f'{sorted(POS_ENCODINGS.module_dict)}')
    clash = sorted(set(args) & set(context))
    if clash:
        raise TypeError(f'{name}: {clash} are set by the model and cannot be given in '
                        'pos_embed')
    return scheme(**args, **context)


__all__ = [
    'Grid', 'PEState', 'PositionalEncoding', 'build_pos_encoding', 'NoPE', 'LearnedPE',
    'FactorizedPE', 'SinCosPE', 'PEG', 'RelPosBias', 'SPSA', 'LayerwisePE', 'LaPE', 'PVG',
    'MPVG', 'RotaryPE', 'RoPEAxial', 'RoPEMixed', 'RoPEDINOv3', 'RoPEEVA02', 'ALiBi2D',
    'LookHere'
]
