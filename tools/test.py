"""Test a detector (mmdet 3.x config) or a segmentor (mmseg 1.x config).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE|DIR]
        [--show] [--show-dir DIR] [--wait-time S] [--tta] [--no-strict]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The checkpoint must fill every weight of the model (foreign layouts the
backbone translates count); --no-strict evaluates it anyway.

--out: mmdet: a .pkl of raw results; mmseg: a directory of predicted label maps.
--show-dir: where the drawn predictions go (relative to the work dir; mmdet puts
them under the run's timestamped folder).
"""
import argparse
import copy
import os

from mmengine.config import ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmvitpe  # noqa: F401  (registers modules, applies the checkpoint policy)
from mmvitpe.apis import (CheckpointFitHook, add_common_args, check_test_fits, close_distributed,
                          exit_on_bad_input, init_cpu_distributed, parse_common_args,
                          prepare_config, task_of)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir')
    parser.add_argument('--out', help='mmdet: results .pkl; mmseg: directory of label maps')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save drawn predictions here')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument('--no-strict', action='store_true',
                        help='evaluate even if the checkpoint does not fill every weight of '
                        "the model (mmengine's lenient load; the default refuses)")
    add_common_args(parser)
    return parse_common_args(parser)


# mmdet's and mmseg's own tools/test.py do the next two steps in script-level code
# (trigger_visualization_hook, an inline TTA default) that their packages do not
# expose as an API, so they are restated here for both codebases.
def enable_drawing(cfg, args, task: str) -> None:
    """Draw predictions; --show-dir is relative to the work dir for both codebases."""
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise SystemExit('--show/--show-dir need default_hooks.visualization in the config')
    hooks.visualization.update(draw=True, show=args.show, wait_time=args.wait_time)
    if args.show_dir and task == 'mmdet':
        hooks.visualization.test_out_dir = args.show_dir
    elif args.show_dir:
        cfg.visualizer.save_dir = os.path.join(cfg.work_dir, args.show_dir)
        hooks.visualization.interval = 1


def flip_tta_pipeline(test_pipeline: list) -> list:
    """mmdet's default test-time augmentation: the test pipeline with h-flip."""
    pipeline = copy.deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                    [dict(type='PackDetInputs',
                          meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                     'scale_factor', 'flip', 'flip_direction'))]])
    return pipeline


def apply_tta(cfg, task: str) -> None:
    if task == 'mmdet':
        cfg.setdefault('tta_model', dict(type='DetTTAModel', tta_cfg=dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
        if 'tta_pipeline' not in cfg:
            data = cfg.test_dataloader.dataset
            while 'dataset' in data:
                data = data.dataset
            cfg.tta_pipeline = flip_tta_pipeline(data.pipeline)
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SystemExit('--tta needs tta_model and tta_pipeline in an mmseg config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def main():
    args = parse_args()
    with exit_on_bad_input():
        cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    task = task_of(cfg)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_drawing(cfg, args, task)
    if args.tta:
        apply_tta(cfg, task)
    if args.out and task == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    init_cpu_distributed(args.launcher)
    try:
        with exit_on_bad_input():
            runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
            if not args.no_strict:
                runner.register_hook(CheckpointFitHook(check_test_fits, args.checkpoint))
            if args.out and task == 'mmdet':
                from mmdet.evaluation import DumpDetResults
                runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
            runner.test()
            del runner  # holds the process group: released so that close_distributed ends it
    finally:
        close_distributed()


if __name__ == '__main__':
    main()
