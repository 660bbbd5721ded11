"""Config handling shared by tools/train.py and tools/test.py.

The launchers accept mmdet 3.x and mmseg 1.x configs alike; what differs per
codebase is decided here from the config's ``default_scope``.
"""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

TASKS = ('mmdet', 'mmseg')


def task_of(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's default scope."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'default_scope={scope!r}: the launchers run configs whose '
                         f'default_scope is one of {TASKS} (inherit mmdet::/mmseg:: '
                         'default_runtime.py)')
    return scope


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--cfg-options, --launcher and --local-rank, as mmdet's and mmseg's tools take them."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
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
    """Destroy the process group, if any, while the interpreter is still alive.

    Left to interpreter shutdown, gloo's worker threads can outlive the Python
    objects they hold and abort the process (SIGABRT, "terminate called without
    an active exception") after a successful run; see pytorch/pytorch#179291.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

