"""Config handling shared by tools/train.py and tools/test.py.

The launchers accept mmdet 3.x and mmseg 1.x configs alike; what differs per
codebase is decided here from the config's ``default_scope``.
"""
import argparse
import contextlib
import difflib
import gc
import inspect
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmvitpe.weights.reader import CheckpointError

TASKS = ('mmdet', 'mmseg')
# top-level keys something reads after the config is loaded: the Runner's arguments,
# what Runner and its helpers look up in cfg, and what our launchers read
READ_AT_RUN_TIME = frozenset(inspect.signature(Runner.__init__).parameters) - {'self'} | {
    'runner_type', 'model_wrapper_cfg', 'find_unused_parameters', 'compile', 'sync_bn',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'tta_model', 'tta_pipeline'}


def task_of(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's default scope."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'default_scope={scope!r}: the launchers run configs whose '
                         f'default_scope is one of {TASKS} (inherit mmdet::/mmseg:: '
                         'default_runtime.py)')
    return scope


class ConfigOptionError(ValueError):
    """A --cfg-options key that would be silently ignored."""


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction``, with a usage error for an item that is not KEY=VALUE
    (mmengine's fails with a bare unpacking traceback)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or ():
            key = item.split('=', 1)[0]
            if '=' not in item or not key or '' in key.split('.'):
                parser.error(f'{option_string} {item!r}: expected KEY=VALUE with a dotted key, '
                             'e.g. model.backbone.depth=4')
        super().__call__(parser, namespace, values, option_string)


def _paths_ending_with(node, name: str, prefix: str = '', depth: int = 3) -> list:
    """Dotted paths of keys called ``name`` in nested dicts (for suggestions)."""
    if not isinstance(node, dict) or depth == 0:
        return []
    found = [f'{prefix}{name}'] if name in node else []
    for key, value in node.items():
        found += _paths_ending_with(value, name, f'{prefix}{key}.', depth - 1)
    return found


# dicts whose keys are the user's own choice (mmengine's optimizer constructor)
FREE_FORM_KEYS = frozenset({'custom_keys'})


def check_cfg_options(cfg: Config, options: dict) -> None:
    """Refuse --cfg-options keys that would be silently ignored.

    mmengine merges any key: a misspelt one just adds an entry nothing reads
    (``train_cfgg.max_iters=2``, ``default_hooks.checkpoint.intervl=2``). A new
    top-level key nothing reads, a new key that is a near-miss of an existing
    sibling, and a list index out of range are errors naming the key. New keys
    that are no near-miss stay allowed: component dicts take arguments the
    config does not list (``model.backbone.pos_embed.hidden=32``). Changing an
    existing top-level variable that only the config file itself used warns:
    its value was already substituted where the file used it.

    Raises:
        ConfigOptionError: naming the option and, where there is one, the likely key.
    """
    for option in options:
        parts, node = option.split('.'), cfg._cfg_dict
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or 'the config'
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigOptionError(
                        f'--cfg-options {option}: {where} is a list of {len(node)} items; '
                        f'{part!r} is not an index in 0..{len(node) - 1}')
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                break  # mmengine refuses a key below a non-dict value itself
            if part in node:
                if depth == 0 and part not in READ_AT_RUN_TIME:
                    print_log(f'--cfg-options {option}: {part!r} is a variable of the config '
                              'file, already substituted where the file used it; changing it '
                              'here changes nothing else', logger='current', level=30)
                node = node[part]
                continue
            # custom_keys' keys are parameter-name substrings: 'backbone' beside
            # 'backbone.pe.' is a new entry, not a misspelling
            free_form = depth > 0 and parts[depth - 1] in FREE_FORM_KEYS
            near = [] if free_form else difflib.get_close_matches(
                part, [str(k) for k in node], n=1, cutoff=0.8)
            rest = parts[depth + 1:]
            if depth == 0 and part not in READ_AT_RUN_TIME:
                near = near or _paths_ending_with(node, part)
                hint = f'; did you mean {".".join(near[:1] + rest)}?' if near else ''
                raise ConfigOptionError(f'--cfg-options {option}: unknown top-level key '
                                        f'{part!r}, which nothing reads{hint}')
            if near:
                raise ConfigOptionError(f'--cfg-options {option}: {where} has no key {part!r}; '
                                        f'did you mean {".".join(parts[:depth] + near + rest)}?')
            break


def compile_arguments(cfg: Config) -> Optional[dict]:
    """Take the config's ``compile`` out of it: None when it is off (absent,
    False, None or an empty dict, as mmengine reads it), else the
    ``torch.compile`` arguments (``{}`` for True).

    Raises:
        ConfigOptionError: a value that is not a bool or a dict, a key that
            ``torch.compile`` does not take, or a value it does not (a flag that is
            no bool, an unknown backend or mode), naming it and the valid ones.
    """
    value = cfg.pop('compile', False)
    if value is None:
        return None
    if isinstance(value, bool):
        return {} if value else None
    if not isinstance(value, dict):
        raise ConfigOptionError(f'compile={value!r}: expected True, False or a dict of '
                                'torch.compile arguments')
    valid = sorted(set(inspect.signature(torch.compile).parameters) - {'model'})
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise ConfigOptionError(f'compile: torch.compile takes no {", ".join(unknown)}; '
                                f'valid: {", ".join(valid)}')
    for key, choices in _compile_choices().items():
        given = value.get(key)
        if key not in value or (key == 'backend' and callable(given)):
            continue
        # `is` for the flags: 1 == True, but a flag takes a bool
        if not any(given is c if c in (None, True, False) else given == c for c in choices):
            raise ConfigOptionError(f'compile.{key}={value[key]!r}; valid: {choices}')
    if 'options' in value and not isinstance(value['options'], (dict, type(None))):
        raise ConfigOptionError(f'compile.options={value["options"]!r}: expected a dict of '
                                'inductor options or None')
    return dict(value) or None


def _compile_choices() -> dict:
    """The values torch.compile takes for its flags, its backend and its mode names."""
    from torch._dynamo import list_backends
    from torch._inductor import list_mode_options
    return dict(fullgraph=[True, False], disable=[True, False], dynamic=[None, True, False],
                backend=sorted(list_backends(exclude_tags=())),
                mode=[None, *sorted(list_mode_options())])


@contextlib.contextmanager
def exit_on_bad_input():
    """Bad options and checkpoints end the launcher with their one-line message
    (exit status 1), not a traceback."""
    try:
        yield
    except (CheckpointError, ConfigOptionError) as e:
        raise SystemExit(f'error: {e}') from None


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--cfg-options, --launcher and --local-rank, as mmdet's and mmseg's tools take them."""
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config keys, e.g. model.backbone.pos_embed.type=LaPE')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_common_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, and export LOCAL_RANK for launchers that pass it as an argument."""
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _replace_sync_bn(node) -> int:
    """SyncBN -> BN in every norm config below ``node``; returns the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        count += sum(_replace_sync_bn(v) for v in node)
    return count


def prepare_config(config: str, cfg_options: Optional[dict], launcher: str,
                   work_dir: Optional[str]) -> Config:
    """Load a config, merge overrides, set launcher and work dir, adapt to CPU.

    On a machine without CUDA, SyncBN becomes BN (torch's SyncBatchNorm needs
    GPU tensors once a process group exists), and distributed runs use gloo
    through :func:`init_cpu_distributed` and the CPU-compatible DDP wrapper.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    task_of(cfg)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    if not torch.cuda.is_available():
        replaced = _replace_sync_bn(cfg._cfg_dict)
        if replaced:
            print_log(f'no CUDA: {replaced} SyncBN layer config(s) set to BN', logger='current')
        cfg.setdefault('env_cfg', ConfigDict())
        cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        if launcher != 'none':
            cfg.setdefault('model_wrapper_cfg', ConfigDict())
            cfg.model_wrapper_cfg.type = 'mmvitpe.CPUCompatibleDDP'
            cfg.model_wrapper_cfg.setdefault(
                'find_unused_parameters', cfg.get('find_unused_parameters', False))
    return cfg


def init_cpu_distributed(launcher: str) -> None:
    """Start the gloo process group on a machine without CUDA.

    mmengine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` first; the
    Runner skips it when a process group already exists.
    """
    if launcher == 'none' or torch.cuda.is_available() or torch.distributed.is_initialized():
        return
    if launcher != 'pytorch':
        raise SystemExit(f'--launcher {launcher} on a machine without CUDA: use '
                         '--launcher pytorch (torchrun) for CPU training')
    torch.distributed.init_process_group(backend='gloo')


def close_distributed() -> None:
    """End the process group, if any, and its gloo threads, while the interpreter
    is still alive.

    A gloo worker thread frees each finished collective's tensors, which takes
    the GIL; one still waiting for it when the interpreter shuts down is ended
    inside a C++ destructor, aborting a finished run (SIGABRT, "terminate called
    without an active exception"). The group's threads stop only when its last
    reference goes: call this after the Runner (whose DDP wrapper holds the
    group) is released; unreachable cycles are collected here first (and no
    function default holds it: mmvitpe/engine/cpu_ddp.py).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()

