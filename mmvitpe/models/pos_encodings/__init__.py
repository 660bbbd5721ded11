"""Positional-encoding schemes, one per file, behind one interface (base.py).

Build one with :func:`build_pos_encoding`; the type names are the class names.
A list of configs (or ``dict(type='Compose', schemes=[...])``) builds a
composite (compose.py); presets.py names the common composites.
"""
import inspect

from mmvitpe.registry import POS_ENCODINGS
from .alibi_2d import ALiBi2D
from .base import Grid, PEState, PositionalEncoding
from .compose import CONTEXT_ARGS, Compose, CompositeState
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
from .rel_pos_decomposed import RelPosDecomposed
from .rope import RotaryPE
from .rope_axial import RoPEAxial
from .rope_dinov3 import RoPEDINOv3
from .rope_eva import RoPEEVA02
from .rope_mixed import RoPEMixed
from .sincos import SinCosPE
from .sp_sa import SPSA
from .presets import (BEiTPE, EVA02PE, RoPEAxialAPE, RoPEMixedAPE,  # noqa: E402 (after members)
                      SPViTPE, ViTDetPE)


def _valid_types() -> list:
    return sorted(POS_ENCODINGS.module_dict) + ['Compose (or a list of configs)']


def build_pos_encoding(cfg, **context) -> PositionalEncoding:
    """Build the scheme ``cfg['type']`` with the model's context.

    Args:
        cfg: ``dict(type=<scheme>, **scheme_args)``; or a list of such configs
            (a composite, same as ``dict(type='Compose', schemes=[...])``).
        **context: embed_dim, num_heads, depth, num_prefix_tokens,
            num_register_tokens, pretrain_grid, input_grid and window_sizes,
            supplied by the transformer.

    Raises:
        ValueError: for an unknown type, naming the valid ones.
        TypeError: for an argument the scheme does not take.
    """
    if isinstance(cfg, (list, tuple)):
        cfg = dict(type='Compose', schemes=list(cfg))
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'pos_embed must be a dict with a "type" key or a list of them, got '
                         f'{cfg!r}; valid types: {_valid_types()}')
    args = dict(cfg)
    name = args.pop('type')
    scheme = Compose if name == 'Compose' else POS_ENCODINGS.module_dict.get(name)
    if scheme is None:
        raise ValueError(f'unknown positional encoding type {name!r}; valid types: '
                         f'{_valid_types()}')
    clash = sorted(set(args) & set(context))
    if clash:
        raise TypeError(f'{name}: {clash} are set by the model and cannot be given in '
                        'pos_embed')
    accepted = scheme_arguments(scheme)
    unknown = sorted(set(args) - accepted)
    # (a preset names its members' options itself)
    if unknown and not hasattr(scheme, 'MEMBERS'):  # e.g. another scheme's option left behind
        raise TypeError(f'{name} takes no {unknown} (another scheme\'s options?); its '
                        f'options: {sorted(accepted - CONTEXT_ARGS)}')
    return scheme(**args, **context)


def scheme_arguments(scheme: type) -> set:
    """The keyword arguments a scheme's constructor takes, through its base classes."""
    names = set()
    for cls in scheme.__mro__:
        if '__init__' in vars(cls) and issubclass(cls, PositionalEncoding):
            names |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {'self'}


__all__ = [
    'Grid', 'PEState', 'PositionalEncoding', 'build_pos_encoding', 'NoPE', 'LearnedPE',
    'FactorizedPE', 'SinCosPE', 'PEG', 'RelPosBias', 'RelPosDecomposed', 'SPSA', 'LayerwisePE',
    'LaPE', 'PVG', 'MPVG', 'RotaryPE', 'RoPEAxial', 'RoPEMixed', 'RoPEDINOv3', 'RoPEEVA02',
    'ALiBi2D', 'LookHere', 'Compose', 'CompositeState', 'BEiTPE', 'RoPEAxialAPE', 'RoPEMixedAPE',
    'SPViTPE', 'EVA02PE', 'ViTDetPE'
]
