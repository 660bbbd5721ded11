"""The main job on built-in data: Mask R-CNN and UperNet with ViT-Adapter-T (MPVG).

1. writes the demo data (tools/make_demo_data.py) unless it is there;
2. trains the segmentation demo from scratch, then the detection demo from
   the segmentation backbone (init_cfg Pretrained across mmseg -> mmdet),
   with tools/train.py (CPU is fine);
3. evaluates the untrained and the trained model with the real COCO / mIoU
   metrics, and draws the trained model's predictions (tools/test.py --show-dir);
4. plots the training losses to <work-dir>/loss_curves.png and prints a table.

Usage: python tools/run_demo.py [--work-dir work_dirs/demo] [--tasks det seg]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmvitpe  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {  # in training order: det starts from the seg backbone
    'seg': ('configs/demo/upernet_vit-adapter-t-mpvg_demo.py', ['mIoU', 'aAcc']),
    'det': ('configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py',
            ['coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50']),
}


def run(cmd: list) -> None:
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def evaluate_untrained(config: str, work_dir: str) -> dict:
    """Metrics of the freshly initialised model (same seed as training)."""
    cfg = Config.fromfile(os.path.join(REPO, config))
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    return Runner.from_cfg(cfg).test()


def losses(work_dir: str) -> tuple:
    scalars = sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json'))[-1]
    rows = [json.loads(line) for line in open(scalars)]
    rows = [r for r in rows if 'loss' in r]
    return [r['iter'] for r in rows], [r['loss'] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS),
                        help='det alone needs a finished seg run in the work dir')
    args = parser.parse_args()
    work_root = os.path.abspath(args.work_dir)
    if not os.path.exists(os.path.join(REPO, 'data/demo/coco/annotations/instances_val.json')):
        run([sys.executable, 'tools/make_demo_data.py', '--out', 'data/demo'])

    results = {}
    for task in [t for t in TASKS if t in args.tasks]:
        config, keys = TASKS[task]
        work_dir = os.path.join(work_root, task)
        options = []
        if task == 'det':
            seg_checkpoint = os.path.join(work_root, 'seg', 'iter_240.pth')
            options = ['--cfg-options', f'model.backbone.init_cfg.checkpoint={seg_checkpoint}']
        start = time.time()
        run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir, *options])
        minutes = (time.time() - start) / 60
        checkpoint = open(os.path.join(work_dir, 'last_checkpoint')).read().strip()
        run([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir', work_dir,
             '--show-dir', 'predictions'])
        trained_json = sorted(glob.glob(f'{work_dir}/*/*.json'), key=os.path.getmtime)[-1]
        trained = json.load(open(trained_json))
        untrained = evaluate_untrained(config, os.path.join(work_dir, 'untrained'))
        results[task] = dict(keys=keys, trained=trained, untrained=untrained, minutes=minutes,
                             losses=losses(work_dir))

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (task, r) in zip(axes[0], results.items()):
        ax.plot(*r['losses'])
        ax.set(title=f'{task}: training loss', xlabel='iteration', ylabel='loss')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    curve = os.path.join(work_root, 'loss_curves.png')
    fig.savefig(curve, dpi=100)

    print('\n| task | metric | untrained | trained | train minutes |')
    print('|---|---|---:|---:|---:|')
    for task, r in results.items():
        for key in r['keys']:
            print(f"| {task} | {key} | {r['untrained'].get(key, float('nan')):.3f} | "
                  f"{r['trained'].get(key, float('nan')):.3f} | {r['minutes']:.1f} |")
    print(f'\nloss curves: {curve}')
    for task in results:
        print(f'{task} predictions: {os.path.join(work_root, task)} (*/predictions)')


if __name__ == '__main__':
    main()
