"""Train a detector (mmdet 3.x config) or a segmentor (mmseg 1.x config).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [auto|PATH]] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

``compile=True`` (or a dict of torch.compile arguments) in the config or in
--cfg-options compiles the backbone (see :func:`compile_backbone`).

Multi-GPU: tools/dist_train.sh CONFIG GPUS; CPU machines train with gloo.
"""
import argparse

import torch
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmvitpe  # noqa: F401  (registers modules, applies the checkpoint policy)
from mmvitpe.apis import (CheckpointFitHook, add_common_args, apply_resume_policy,
                          check_resume_fits, close_distributed, compile_arguments,
                          exit_on_bad_input,
                          init_cpu_distributed, parse_common_args, prepare_config)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true', help='mixed precision (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from PATH, or from the latest checkpoint in the work dir '
                        '(its last_checkpoint file, else its newest readable checkpoint)')
    add_common_args(parser)
    return parse_common_args(parser)


def compile_backbone(model, options: dict) -> None:
    """The config's ``compile`` (torch.compile's arguments), applied to the
    backbone's forward. mmengine 0.10.7 would compile the whole ``train_step``,
    optimizer step included, which dynamo cannot trace (it fails in the
    optimizer's ``param_groups``); the backbone is the part this package keeps
    in one graph (the detector/segmentor heads run eagerly)."""
    from mmengine.model import is_model_wrapper
    backbone = (model.module if is_model_wrapper(model) else model).backbone
    backbone.forward = torch.compile(backbone.forward, **options)
    print_log(f'compiled the backbone ({type(backbone).__name__}) with torch.compile({options})',
              logger='current')


def main():
    args = parse_args()
    with exit_on_bad_input():
        cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU: mmengine 0.10 AmpOptimWrapper refuses CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr')
        if scale and 'base_batch_size' in scale:
            scale.enable = True
        else:
            print_log('--auto-scale-lr ignored: the config has no auto_scale_lr.base_batch_size '
                      '(mmseg configs have none)', logger='current', level=30)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    with exit_on_bad_input():
        resume_from = apply_resume_policy(cfg)
        # taken out of the config, so that mmengine does not compile train_step itself
        compile_options = compile_arguments(cfg)
    init_cpu_distributed(args.launcher)
    try:
        with exit_on_bad_input():
            train(cfg, resume_from, compile_options)
    finally:
        close_distributed()


def train(cfg, resume_from, compile_options) -> None:
    """Build the Runner and train. The Runner lives only in here: released on
    return, so that close_distributed can end the process group it holds."""
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if resume_from:
        runner.register_hook(CheckpointFitHook(check_resume_fits, resume_from))
    if compile_options is not None:
        compile_backbone(runner.model, compile_options)
    runner.train()


if __name__ == '__main__':
    main()
