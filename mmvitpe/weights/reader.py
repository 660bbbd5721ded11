"""Read weights from released checkpoint files, safely and with clear errors.

Formats: PyTorch files (``.pth``/``.pt``/``.bin``: a raw state dict, or one
under ``state_dict`` / ``model`` / ``module``, as mmengine, timm/DeiT and
others save them), ``.safetensors``, and a Hugging Face model directory
(``config.json`` with ``model.safetensors``, its shards and their
``model.safetensors.index.json``, or ``pytorch_model.bin``): ``config.json`` is
read as JSON data, never executed, and the index may only name files in the
directory. PyTorch files are always read with
``weights_only=True`` (see :mod:`mmvitpe.utils.safe_load`): a pickle that would
run code is refused, and a truncated or foreign file gives a one-line error
naming the file instead of a traceback from inside torch.

Reading terminates and stays bounded whatever the file holds: container
nesting is followed at most ``MAX_NESTING`` deep and never in a cycle; a tensor
whose logical size exceeds the bytes stored for it (a view made with
``expand``) is refused before anything could materialise it; values that are
not tensors under a parameter's key, and two keys that become one after
``module.`` is stripped, are errors naming the key. mmengine's own loader
(``--resume``, ``load_from``, tools/test.py) reads local files through
:func:`read_checkpoint` too (see :mod:`mmvitpe.utils.safe_load`).
"""
import json
import os
import pickle
import re
from typing import Dict, Optional

import torch
from torch import Tensor

CONTAINER_KEYS = ('state_dict', 'model', 'module')
MAX_NESTING = 8
# entries of training checkpoints that sit beside the tensors and are no parameters
METADATA_KEYS = frozenset((
    'meta', 'epoch', 'iter', 'arch', 'args', 'version', 'metric', 'best_metric', 'optimizer',
    'lr_scheduler', 'scaler', 'amp', 'message_hub', 'param_schedulers', 'config', 'cfg'))


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint."""


class IncompatibleCheckpointError(CheckpointError):
    """A strict load found tensors it cannot place or weights the model needs, or
    tensors that do not fit each other or the model."""


def _read_torch(path: str, map_location='cpu'):
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)', str(e))
        if found or 'refusing getattr' in str(e):
            name = found.group(1) if found else 'getattr'
            raise CheckpointError(
                f'{path}: refused, the file pickles {name!r}, which is code or an object '
                'rather than tensors; loading it could run arbitrary code. If you trust the '
                'file, load it yourself with torch.load(weights_only=False) and save its '
                'state dict again.') from None
        # torch's text is a paragraph about weights_only; the reason is after this mark
        reason = str(e).split('WeightsUnpickler error:')[-1].strip()
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (malformed pickle: '
                              f'{(reason.splitlines() or [""])[0]}); {DAMAGED_HINT}') from None
    except Exception as e:  # noqa: BLE001  torch fails in many ways on foreign bytes
        first_line = (str(e).splitlines() or [''])[0].split('. ')[0]  # torch adds advice
        reason = ('0 bytes' if os.path.getsize(path) == 0
                  else f'{type(e).__name__}: {first_line}')
        raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint ({reason}); '
                              f'{DAMAGED_HINT}') from None


DAMAGED_HINT = ('copy or download it again; if it is the last checkpoint of an interrupted '
                'run, delete it (and the work dir\'s last_checkpoint file) to resume from '
                'the one before')


def check_bounded(path: str, key: str, value: Tensor) -> None:
    """Refuse a tensor whose logical size exceeds its stored bytes (an ``expand``
    view): resizing or casting it would materialise all of it."""
    stored = value.untyped_storage().nbytes()
    if value.numel() and value.numel() * value.element_size() > stored:
        raise CheckpointError(
            f'{path}: {key!r} is a {tuple(value.shape)} view of {stored} stored bytes '
            f'(made with expand or as_strided); materialising it would take '
            f'{value.numel() * value.element_size() / 2 ** 30:.1f} GiB. A real parameter is '
            'stored in full: save it with .contiguous() if it is meant to be this large')


def tensor_kind(tensor: Tensor) -> str:
    """'floating-point', 'complex', 'integer' or 'boolean': loading never casts across kinds."""
    if tensor.is_complex():
        return 'complex'
    if tensor.is_floating_point():
        return 'floating-point'
    return 'boolean' if tensor.dtype == torch.bool else 'integer'


def non_finite(tensor: Tensor) -> bool:
    """Whether a floating-point tensor holds a NaN or an infinity."""
    return tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())


def read_checkpoint(path: str, map_location='cpu'):
    """The whole object of a PyTorch checkpoint file, read safely, every tensor of
    its state dict checked by :func:`check_bounded` (mmengine's loader uses this).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: refused, truncated/foreign, cyclic, or an unbounded tensor.
    """
    if is_model_dir(path):  # one ViT's weights: mmengine's load_from puts them on the backbone
        return {'state_dict': {f'backbone.{k}': v for k, v in read_state_dict(path).items()}}
    _check_file(path)
    obj = _read_torch(path, map_location)
    if isinstance(obj, dict):
        state = strip_module_prefix(path, _unwrap(path, obj))
        for key, value in state.items():
            if isinstance(value, Tensor):
                check_bounded(path, key, value)
    return obj


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise CheckpointError(f'{path}: is a directory without a config.json, not a Hugging '
                              'Face model directory; give the checkpoint file (.pth, .pt, .bin '
                              'or .safetensors) inside it')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')


MODEL_DIR_CONFIG = 'config.json'
MAX_JSON_BYTES = 64 * 2 ** 20  # a config or shard index is kilobytes; bounded work


def is_model_dir(path: str) -> bool:
    """A Hugging Face model directory: a directory with a ``config.json``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MODEL_DIR_CONFIG))


def _read_json(path: str) -> dict:
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise CheckpointError(f'{path}: {os.path.getsize(path)} bytes; a config or shard index '
                              f'is far smaller (at most {MAX_JSON_BYTES} read)')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f'{path}: not valid JSON ({e})') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: holds a JSON {type(data).__name__}, not an object')
    return data


def read_source_config(path: str) -> Optional[dict]:
    """A model directory's ``config.json`` as data (None for a checkpoint file)."""
    return _read_json(os.path.join(path, MODEL_DIR_CONFIG)) if is_model_dir(path) else None


def _read_weights_file(path: str) -> dict:
    _check_file(path)
    return _read_safetensors(path) if path.endswith('.safetensors') else \
        _unwrap(path, _read_torch(path))


def _read_model_dir(path: str) -> Dict[str, Tensor]:
    """The weights of a model directory: one file, or the shards its index names."""
    for name in ('model.safetensors', 'pytorch_model.bin'):
        if os.path.isfile(os.path.join(path, name)):
            return _read_weights_file(os.path.join(path, name))
    indexes = [n for n in ('model.safetensors.index.json', 'pytorch_model.bin.index.json')
               if os.path.isfile(os.path.join(path, n))]
    if not indexes:
        raise CheckpointError(f'{path}: a model directory without weights: expected '
                              'model.safetensors, pytorch_model.bin or shards with their '
                              '.index.json')
    index_path = os.path.join(path, indexes[0])
    weight_map = _read_json(index_path).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f'{index_path}: no "weight_map" of parameter names to shard files')
    state = {}
    for shard in sorted(set(map(str, weight_map.values()))):
        if not re.fullmatch(r'\w[\w.-]*', shard):  # a name in this directory, no path
            raise CheckpointError(f'{index_path}: shard {shard!r} is not a file name in the '
                                  'model directory')
        for key, value in _read_weights_file(os.path.join(path, shard)).items():
            if key in state:
                raise CheckpointError(f'{index_path}: {key!r} is in two shards; keep one')
            state[key] = value
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(f'{index_path}: names {len(missing)} tensors its shards do not '
                              f'hold, e.g. {missing[:3]}; the download is incomplete')
    return state


def _unwrap(path: str, obj: dict) -> dict:
    """The innermost dict under CONTAINER_KEYS (a raw state dict stays as it is)."""
    seen = {id(obj)}
    for _ in range(MAX_NESTING):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            return obj
        if id(inner) in seen:
            raise CheckpointError(f'{path}: its container refers to itself (a state dict '
                                  'holding itself); not a checkpoint any library writes')
        seen.add(id(inner))
        obj = inner
    raise CheckpointError(f'{path}: containers nested deeper than {MAX_NESTING} levels of '
                          f'{list(CONTAINER_KEYS)}; not a checkpoint any library writes')


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
        CheckpointError: refused (code in the pickle), truncated, no tensors, a
            non-tensor value under a parameter's key, two keys for one parameter,
            or ``key`` not an entry of the file (naming those that hold tensors).
    """
    if is_model_dir(path):
        obj = _read_model_dir(path)
    elif path.endswith('.safetensors'):
        _check_file(path)
        obj = _read_safetensors(path)
    else:
        obj = read_checkpoint(path)
    if key is not None:
        obj = _entry(obj, key, path)
    obj = _unwrap(path, obj) if isinstance(obj, dict) else obj
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: holds a {type(obj).__name__}, not a state dict (raw or '
                              f'under one of {list(CONTAINER_KEYS)})')
    if not any(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f'{path}: holds no weights (no tensors among its entries {_listed(obj)}); '
            f'expected a state dict, raw or under one of {list(CONTAINER_KEYS)}' + (
                f', or give key= one of {_weight_entries(obj)}' if _weight_entries(obj) else ''))
    for name, value in obj.items():
        if not isinstance(name, str):
            raise CheckpointError(f'{path}: key {name!r} is a {type(name).__name__}; state dict '
                                  'keys are parameter names (str)')
        if name not in METADATA_KEYS and name in _weight_entries(obj):
            raise CheckpointError(
                f'{path}: {name!r} holds a dict of weights beside the state dict\'s tensors; '
                f'give key={name!r} (init_cfg, or --key for the tools) to read those, or '
                'save the state dict without it')
        if name not in METADATA_KEYS and not isinstance(value, Tensor):
            kind = f'{type(value).__module__}.{type(value).__name__}'.removeprefix('builtins.')
            raise CheckpointError(
                f'{path}: {name!r} holds a value of type {kind}, not a tensor; every entry of a '
                'state dict must be a torch.Tensor (convert it with torch.as_tensor and save '
                'again)')
    return strip_module_prefix(path, {k: v for k, v in obj.items() if k not in METADATA_KEYS})


def _listed(obj: dict, limit: int = 8) -> str:
    names = [repr(k) for k in list(obj)[:limit]]
    return '[' + ', '.join(names) + (', ...' if len(obj) > limit else '') + ']'


def _weight_entries(obj: object) -> list:
    """The entries of ``obj`` that are dicts holding tensors (an EMA copy, say)."""
    return sorted(str(k) for k, v in obj.items() if isinstance(v, dict) and any(
        isinstance(t, Tensor) for t in v.values())) if isinstance(obj, dict) else []


def strip_module_prefix(path: str, state: dict) -> dict:
    """``module.`` (DataParallel) stripped from the keys; two keys that become one
    (``k`` and ``module.k``) are an error, not "last wins"."""
    out, original = {}, {}
    for key, value in state.items():
        name = re.sub(r'^module\.', '', key) if isinstance(key, str) else key
        if name in out:
            raise CheckpointError(f'{path}: {original[name]!r} and {key!r} are both present '
                                  'and name the same parameter once module. is stripped; '
                                  'keep one')
        out[name], original[name] = value, key
    return out


def _entry(obj: object, key: str, path: str) -> dict:
    """``obj[key]``, or a CheckpointError naming the entries that hold tensors."""
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        return obj[key]
    entries = _weight_entries(obj)
    raise CheckpointError(f'{path}: no weights under key {key!r}; entries holding weights: '
                          f'{entries or "none (a plain state dict: give no key)"}')
