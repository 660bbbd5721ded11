"""Argument checks shared by the model constructors, raised where a value enters.

Every check names the owner, the argument, the bad value and what is valid:
``TypeError`` for a value of the wrong kind, ``ValueError`` for one out of
range. ``bool`` is never accepted as a number (``True`` is an ``int`` in
Python, never a size), nor a number or a string as a flag (``'False'`` is
truthy). mmengine's ``ConfigDict`` and lists/tuples from a
config are accepted wherever a dict / sequence is.
"""
import math
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np
import torch


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_bool(owner: str, name: str, value) -> bool:
    """A flag: True or False (numpy's bool too); not 0/1, None or a string."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f'{owner}: {name}={value!r} must be True or False, got '
                        f'{type(value).__name__}')
    return bool(value)


def check_int(owner: str, name: str, value, minimum: Optional[int] = 1) -> int:
    """An integer >= ``minimum`` (no minimum when None)."""
    if not _is_int(value):
        raise TypeError(f'{owner}: {name}={value!r} must be an int, got '
                        f'{type(value).__name__}')
    if minimum is not None and value < minimum:
        raise ValueError(f'{owner}: {name}={value!r} must be an int >= {minimum}')
    return int(value)


def check_real(owner: str, name: str, value, low: Optional[float] = None,
               high: Optional[float] = None, low_open: bool = False,
               high_open: bool = False) -> float:
    """A finite real number in the interval given by ``low``/``high`` (open ends
    where ``*_open``)."""
    if not _is_real(value):
        raise TypeError(f'{owner}: {name}={value!r} must be a number, got '
                        f'{type(value).__name__}')
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if not math.isfinite(number) or too_low or too_high:
        left = '-inf' if low is None else f'{low}'
        right = 'inf' if high is None else f'{high}'
        interval = f'{"(" if low_open or low is None else "["}{left}, {right}' \
                   f'{")" if high_open or high is None else "]"}'
        raise ValueError(f'{owner}: {name}={value!r} must be in {interval}')
    return number


def check_positive(owner: str, name: str, value) -> float:
    """A number > 0 (frequencies, temperatures, ratios)."""
    return check_real(owner, name, value, low=0., low_open=True)


def check_rate(owner: str, name: str, value) -> float:
    """A dropout / drop-path probability in [0, 1)."""
    return check_real(owner, name, value, low=0., high=1., high_open=True)


def check_size_pair(owner: str, name: str, value) -> Tuple[int, int]:
    """An int side or an (h, w) pair of positive ints -> (h, w)."""
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f'{owner}: {name}={value!r} must be an int or an (h, w) pair of ints')
    return (check_int(owner, f'{name}[0]', value[0]), check_int(owner, f'{name}[1]', value[1]))


def check_dict(owner: str, name: str, value, needs_type: bool = True,
               optional: bool = True) -> Optional[dict]:
    """A config dict (with a ``type`` key when ``needs_type``), or None when optional."""
    if value is None and optional:
        return None
    if not isinstance(value, dict) or (needs_type and 'type' not in value):
        example = "dict(type='BN')" if 'norm' in name else "dict(type=...)"
        raise TypeError(f'{owner}: {name}={value!r} must be a config dict such as {example}')
    return value


def check_norm_cfg(owner: str, name: str, value) -> Optional[dict]:
    """A norm config whose type mmcv's ``build_norm_layer`` builds (BN, SyncBN, GN,
    LN, ...), or None: an unknown type is named here, not inside mmcv's registry."""
    value = check_dict(owner, name, value)
    if value is None:
        return None
    from mmcv.cnn import build_norm_layer  # noqa: F401  registers mmcv's norm layers
    from mmengine.registry import MODELS
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    with MODELS.switch_scope_and_registry(None) as registry:
        valid = sorted(n for n, c in registry.module_dict.items()
                       if isinstance(c, type) and issubclass(c, norms))
        layer = value['type']
        found = layer if isinstance(layer, type) else registry.get(layer)
    if not (isinstance(found, type) and issubclass(found, norms)):
        raise ValueError(f'{owner}: {name} type {layer!r} is not a norm layer; valid: {valid}')
    return value


def check_int_list(owner: str, name: str, value, minimum: Optional[int] = 0,
                   allow_empty: bool = True) -> list:
    """A list/tuple of ints (not a scalar, not a string)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f'{owner}: {name}={value!r} must be a list of ints, got '
                        f'{type(value).__name__}')
    if not value and not allow_empty:
        raise ValueError(f'{owner}: {name}=[] is empty')
    return [check_int(owner, f'{name}[{i}]', v, minimum) for i, v in enumerate(value)]


def check_block_list(owner: str, name: str, value, depth: int) -> frozenset:
    """Block indices of a PE scheme: None means every block; [] is refused
    (a scheme on no block is no PE at all: say NoPE)."""
    if value is None:
        return frozenset(range(depth))
    blocks = check_int_list(owner, name, value, minimum=None)
    if not blocks:
        raise ValueError(f'{owner}: {name}=[] puts the scheme on no block, i.e. no PE at all; '
                         "use pos_embed=dict(type='NoPE') for that, or name blocks in "
                         f'0..{depth - 1}')
    bad = [b for b in blocks if not 0 <= b < depth]
    if bad:
        raise ValueError(f'{owner}: {name}={blocks} names blocks {bad} outside 0..{depth - 1}')
    return frozenset(blocks)


def check_image(owner: str, img, in_channels: int) -> None:
    """A (B, C, H, W) image batch with the model's channel count."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f'{owner}: expected an image tensor (B, {in_channels}, H, W), got '
                        f'{type(img).__name__}')
    if img.dim() != 4 or img.shape[1] != in_channels:
        raise ValueError(f'{owner}: expected an image batch of shape (B, {in_channels}, H, W), '
                         f'got {tuple(img.shape)}')
