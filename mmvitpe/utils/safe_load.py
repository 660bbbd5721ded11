"""Checkpoint-loading policy on torch >= 2.6: safe loading stays on.

torch >= 2.6 loads with ``weights_only=True``, and mmengine 0.10.7 calls
``torch.load`` without the flag, so resuming or ``load_from`` of a checkpoint
that mmengine itself wrote fails: it pickles its logging state
(``HistoryBuffer``, numpy arrays and scalars) and, inside it, references to
``HistoryBuffer.min/max/mean/current`` through ``builtins.getattr``.

Policy (applied once, when ``mmvitpe`` is imported):

* ``weights_only=True`` stays the default for every file: a pickle that
  carries code or names any other global is refused.
* The data-only types of mmengine checkpoints are added to torch's allowlist:
  ``HistoryBuffer`` and numpy's array/scalar/dtype reconstructors; so is
  ``argparse.Namespace``, which timm's train.py stores as ``args`` in its
  checkpoints (an attribute container, no code).
* ``builtins.getattr`` is NOT allowlisted (it would let a pickle reach any
  attribute). Its name is mapped to :func:`history_buffer_method`, which only
  resolves the statistic methods of ``HistoryBuffer`` and refuses anything else.

* mmengine's loader for local files (``--resume``, ``load_from``,
  tools/test.py, ``load_checkpoint``) is replaced by one that reads through
  :func:`mmvitpe.weights.reader.read_checkpoint`: the same policy, plus errors
  that name the file and say what to do, and no unbounded tensors.

Nothing here calls ``torch.load(weights_only=False)``. To load a checkpoint you
trust that needs more (e.g. one pickling custom classes), load it yourself with
``weights_only=False`` and save its tensors again.
"""
import argparse
import os

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_numpy_core = getattr(np, '_core', None) or np.core  # numpy 2 renamed np.core
_STATISTICS = frozenset(('min', 'max', 'mean', 'current'))


def history_buffer_method(obj, name: str):
    """Stand-in for ``getattr`` while unpickling: HistoryBuffer statistics only."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only '
        f'HistoryBuffer.{sorted(_STATISTICS)} are allowed')


def mmengine_checkpoint_globals() -> list:
    """The globals an mmengine checkpoint needs beyond torch's defaults."""
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    return [
        HistoryBuffer,
        argparse.Namespace,
        _numpy_core.multiarray._reconstruct,
        _numpy_core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *dtype_classes,
        (history_buffer_method, 'builtins.getattr'),
    ]


def load_from_local(filename: str, map_location=None):
    """mmengine's ``CheckpointLoader`` scheme for local paths, through our reader."""
    from mmvitpe.weights.reader import read_checkpoint
    return read_checkpoint(os.path.expanduser(filename), map_location)


def allow_mmengine_checkpoints() -> None:
    """Extend torch's weights-only allowlist for mmengine checkpoints and route
    mmengine's local-file loading through our reader (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
