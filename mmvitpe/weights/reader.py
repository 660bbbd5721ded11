"""Read weights from released checkpoint files, safely and with clear errors.

Formats: PyTorch files (``.pth``/``.pt``/``.bin``: a raw state dict, or one
under ``state_dict`` / ``model`` / ``module``, as mmengine, timm/DeiT and
others save them) and ``.safetensors``. PyTorch files are always read with
``weights_only=True`` (see :mod:`mmvitpe.utils.safe_load`): a pickle that would
run code is refused, and a truncated or foreign file gives a one-line error
naming the file instead of a traceback from inside torch.
"""
import os
import pickle
import re
from typing import Dict, Optional

import torch
from torch import Tensor

CONTAINER_KEYS = ('state_dict', 'model', 'module')


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint."""


def _read_torch(path: str) -> dict:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)', str(e))
        if found or 'refusing getattr' in str(e):
            name = found.group(1) if found else 'getattr'
            raise CheckpointError(
                f'{path}: refused, the file pickles {name!r}, which is code or an object '
                'rather than tensors; loading it could run arbitrary code. If you trust the '
                'file, load it yourself with torch.load(weights_only=False) and save its '
                'state dict again.') from None
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({e})') from None
    except Exception as e:  # noqa: BLE001  torch fails in many ways on foreign bytes
        first_line = (str(e).splitlines() or [''])[0]
        raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint '
                              f'({type(e).__name__}: {first_line})') from None


def _read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f'{path}: not a valid safetensors file ({e})') from None


def backbone_part(state: Dict[str, Tensor], prefix: Optional[str] = None,
                  source: str = 'checkpoint') -> Dict[str, Tensor]:
    """The keys under ``prefix``, prefix stripped; without a prefix, the
    ``backbone.`` part of a whole detector/segmentor, else ``state`` as is.

    Raises:
        KeyError: an explicit prefix that no key starts with.
    """
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in state) else ''
    if not prefix:
        return state
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        raise KeyError(f'{source}: no keys start with prefix {prefix!r}')
    return part


def read_state_dict(path: str, key: Optional[str] = None) -> Dict[str, Tensor]:
    """The tensors of a checkpoint file, unwrapped from its container.

    Args:
        key: The top-level entry to read, e.g. ``'state_dict_ema'`` for the EMA
            weights of a timm checkpoint; by default the first of CONTAINER_KEYS.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: refused (code in the pickle), truncated, or no tensors.
        KeyError: ``key`` is not an entry of the file, naming those that hold tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    obj = _read_safetensors(path) if path.endswith('.safetensors') else _read_torch(path)
    if key is not None:
        obj = _entry(obj, key, path)
    while isinstance(obj, dict):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f'{path}: holds no tensors (a {type(obj).__name__}); expected a '
                              f'state dict, raw or under one of {list(CONTAINER_KEYS)}')
    return {re.sub(r'^module\.', '', k): v for k, v in obj.items() if isinstance(v, Tensor)}


def _entry(obj: object, key: str, path: str) -> dict:
    """``obj[key]``, or a KeyError naming the entries that hold tensors."""
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        return obj[key]
    entries = sorted(k for k, v in obj.items() if isinstance(v, dict) and any(
        isinstance(t, Tensor) for t in v.values())) if isinstance(obj, dict) else []
    raise KeyError(f'{path}: no weights under key {key!r}; entries holding weights: '
                   f'{entries or "none (a plain state dict: give no key)"}')
