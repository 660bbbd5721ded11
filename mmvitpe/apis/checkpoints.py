"""What the launchers do with checkpoints: one resume policy and one fit check.

Resume (``tools/train.py --resume [PATH]`` or ``resume=True`` in a config):

* an explicit PATH must be a training checkpoint (``meta`` with epoch and iter,
  a ``state_dict``): a bare state dict (timm/DeiT, a converted backbone) is
  refused with a pointer to ``load_from`` / ``init_cfg``;
* auto-resume uses the work dir's ``last_checkpoint`` file; without it, the
  newest readable training checkpoint in the work dir (by its saved iteration)
  is resumed instead of starting over and overwriting them all. A work dir
  holding checkpoints of which none is readable stops the run;
* the resumed checkpoint must fit the model exactly (same keys and shapes) and
  come from the same PE scheme (read from the config text mmengine saves in
  ``meta['cfg']``, parsed, never executed): otherwise the run stops naming
  what differs, before the optimizer state would fail to load.

Evaluation (``tools/test.py``): the checkpoint must fill every weight of the
model and bring nothing it cannot place (foreign layouts are translated by the
backbone as usual), unless ``--no-strict`` asks for mmengine's lenient load.
"""
import ast
import glob
import os.path as osp
import re
from typing import Dict, List, Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import Tensor, nn

from mmvitpe.weights.reader import (CheckpointError, read_checkpoint, strip_module_prefix,
                                    tensor_kind)

MARKER = 'last_checkpoint'


def _listing(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return f'[{shown}{f", ... (+{len(keys) - limit})" if len(keys) > limit else ""}]'


def read_training_checkpoint(path: str) -> dict:
    """A checkpoint that mmengine can resume from, or a CheckpointError saying why not."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not (isinstance(meta, dict) and {'epoch', 'iter'} <= set(meta)
            and isinstance(checkpoint.get('state_dict'), dict)):
        found = sorted(map(str, checkpoint))[:6] if isinstance(checkpoint, dict) else []
        raise CheckpointError(
            f'{path} is not a resumable training checkpoint (it has no meta with epoch/iter '
            f'and state_dict; top-level keys: {found}). --resume continues a run from a '
            'checkpoint tools/train.py wrote. To start a new run from these weights, use '
            f'--cfg-options load_from={path} (a whole detector/segmentor) or '
            f'model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint={path} '
            '(backbone weights such as timm/DeiT, MAE, BEiT)')
    if 'config' in meta:
        # mmengine's Runner.resume executes meta['config'] as Python (Config.fromstring)
        raise CheckpointError(f"{path}: meta['config'] holds a config text that mmengine would "
                              'execute on resume; refusing. Resume only checkpoints written by '
                              'mmengine >= 0.7 (they keep the text in meta["cfg"]), or load the '
                              'weights with load_from')
    return checkpoint


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint auto-resume continues from: the marker's, else the newest
    readable one in ``work_dir``; None when the work dir has no checkpoint."""
    marker = osp.join(work_dir, MARKER)
    if osp.exists(marker):
        with open(marker) as f:
            path = f.read().strip()
        if not osp.isfile(path):
            raise CheckpointError(f'{marker} names {path!r}, which does not exist. Delete '
                                  f'{marker} to resume from the newest checkpoint in '
                                  f'{work_dir}, or pass --resume PATH')
        read_training_checkpoint(path)
        return path
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    found, broken = [], []
    for path in candidates:
        try:
            meta = read_training_checkpoint(path)['meta']
        except CheckpointError as e:
            broken.append(str(e).split('; ')[0])
            continue
        found.append((meta['iter'], osp.getmtime(path), path))
    if not candidates:
        return None
    if not found:
        raise CheckpointError(f'--resume: {work_dir} holds checkpoints but no {MARKER} file and '
                              'no readable training checkpoint:\n  ' + '\n  '.join(broken) +
                              '\nstarting over would overwrite them: move them away, pass '
                              '--resume PATH, or use another --work-dir')
    iteration, _, path = max(found)
    print_log(f'no {MARKER} in {work_dir}: resuming from its newest readable checkpoint '
              f'{path} (iter {iteration})', logger='current')
    for reason in broken:
        print_log(f'skipped unreadable checkpoint: {reason}', logger='current', level=30)
    return path


def apply_resume_policy(cfg) -> Optional[str]:
    """Resolve what a resuming config resumes from; sets ``cfg.load_from``.

    Returns the checkpoint path, or None when there is nothing to resume (a
    fresh work dir: training starts at iteration 0).
    """
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        read_training_checkpoint(cfg.load_from)
    else:
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    return cfg.load_from


def _schemes_in_config_text(text: str) -> List[str]:
    """``pos_embed=dict(type=...)`` values in a saved config text, by parsing it."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'pos_embed' and \
                isinstance(node.value, ast.Call):
            found += [k.value.value for k in node.value.keywords
                      if k.arg == 'type' and isinstance(k.value, ast.Constant)]
    return found


def _state_of(checkpoint: dict, path: str) -> Dict[str, object]:
    """The state dict as mmengine will load it (``module.`` stripped)."""
    return strip_module_prefix(path, checkpoint.get('state_dict', checkpoint))


def _kind_mismatches(state: dict, own: dict) -> List[str]:
    """Keys whose checkpoint tensor is of another kind (integer/bool/complex vs
    floating point) than the model's: torch would cast them silently."""
    return [f'{k}: {state[k].dtype} vs {v.dtype}' for k, v in own.items()
            if isinstance(state.get(k), Tensor) and tensor_kind(state[k]) != tensor_kind(v)]


def _pe_names(model: nn.Module) -> List[str]:
    return sorted({type(m.pe).__name__ for m in model.modules()
                   if hasattr(m, 'pe') and hasattr(m, 'get_layer_depth')})


def check_resume_fits(model: nn.Module, checkpoint: dict, path: str) -> None:
    """The resumed checkpoint has exactly the model's tensors and PE scheme."""
    saved = _schemes_in_config_text(str(checkpoint.get('meta', {}).get('cfg', '')))
    current = _pe_names(model)
    advice = ('Resuming continues the same run with the same model. To start a new run '
              f'from these weights, use load_from={path} without --resume')
    if saved and current and sorted(set(saved)) != current:
        raise CheckpointError(f'{path} was trained with the positional encoding '
                              f'{sorted(set(saved))}, the model now uses {current}. {advice}')
    state, own = _state_of(checkpoint, path), model.state_dict()
    extra = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    shapes = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
              if k in state and hasattr(state[k], 'shape') and state[k].shape != v.shape]
    shapes += _kind_mismatches(state, own)
    if extra or missing or shapes:
        pe = [k for k in extra + missing if re.search(r'(^|\.)pe\.', k)]
        cause = (f'The positional encoding changed (the model uses {current}; PE tensors that '
                 f'differ: {_listing(pe)}). ' if pe else '')
        raise CheckpointError(
            f'{path} does not fit the model being trained. {cause}Only in the checkpoint: '
            f'{_listing(extra)}; only in the model: {_listing(missing)}; other shapes or kinds: '
            f'{_listing(shapes)}. {advice}')


def check_test_fits(model: nn.Module, checkpoint: dict, path: str) -> None:
    """Every weight of the model comes from the checkpoint, and nothing is left over.

    A trial ``load_state_dict`` (mmengine loads the same tensors right after), so
    foreign layouts the backbone translates count as fitting.
    """
    state = _state_of(checkpoint, path)
    kinds = _kind_mismatches(state, model.state_dict())
    try:
        result = model.load_state_dict(state, strict=False)
        missing, extra, shapes = result.missing_keys, result.unexpected_keys, kinds
    except RuntimeError as e:  # torch reports size mismatches even when not strict
        missing = extra = []
        shapes = [line.strip() for line in str(e).splitlines() if 'size mismatch' in line]
        if not shapes:
            raise
    if missing or extra or shapes:
        raise CheckpointError(
            f'{path} does not fit {type(model).__name__}: weights the checkpoint lacks: '
            f'{_listing(missing)}; tensors with no place in the model: {_listing(extra)}; '
            f'other shapes or kinds: {_listing(shapes, 3)}. Evaluating it would report the metric of partly random '
            'weights; pass --no-strict to evaluate it anyway')


class CheckpointFitHook(Hook):
    """Runs a fit check on every checkpoint the runner loads, before the model gets it."""

    priority = 'LOWEST'  # after hooks that rewrite the checkpoint (e.g. EMA)

    def __init__(self, check, path: str) -> None:
        self.check, self.path = check, path

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model
        # mmengine loads into the model inside a wrapper (DDP) or a TTA model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        self.check(model, checkpoint, self.path)

