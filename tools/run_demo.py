"""The main job on built-in data: what mmvitpe is for, in 10 to 14 minutes on 2 CPU cores.

1. writes the demo data (tools/make_demo_data.py) unless it is there and current;
2. seg: trains UperNet + ViT-Adapter-T (MPVG) from scratch with tools/train.py;
3. det: trains Mask R-CNN + ViT-Adapter-T (MPVG) from the segmentation backbone
   (init_cfg Pretrained across mmseg -> mmdet);
   both are evaluated untrained and trained with the real COCO / mIoU metrics,
   and the trained model's predictions are drawn (tools/test.py --show-dir);
4. eomt: trains EoMT (DeiT-T-sized, learned PE) from scratch for the same task as seg;
5. pe: compares NoPE, LearnedPE and MPVG over 2 seeds with tools/compare_pe.py
   on scenes whose classes only position decides (a small plain ViT), at the
   training size and one larger test size: table, error bars, metric vs size;
6. plots the seg/det/eomt training losses to <work-dir>/loss_curves.png and prints
   the tables.

Usage: python tools/run_demo.py [--work-dir work_dirs/demo] [--tasks seg det eomt pe]
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
DATA = 'data/demo'
TASKS = {  # in training order: det starts from the seg backbone
    'seg': ('configs/demo/upernet_vit-adapter-t-mpvg_demo.py', ['mIoU', 'aAcc']),
    'det': ('configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py',
            ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP']),
    'eomt': ('configs/demo/eomt-t_demo.py', ['mIoU', 'aAcc']),
    'pe': ('configs/demo/fcn_vit-baseline-p8_position_demo.py', ['mIoU']),
}
PE_STUDY = ['--schemes', 'NoPE', 'LearnedPE', 'MPVG', '--seeds', '0', '1',
            '--baseline', 'LearnedPE', '--test-sizes', '96']


def run(cmd: list) -> None:
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def stage(text: str, start: float) -> None:
    print(f'\n[demo] {text} (elapsed {(time.time() - start) / 60:.1f} min)\n', flush=True)


def evaluate_untrained(config: str, work_dir: str) -> dict:
    """Metrics of the freshly initialised model (same seed as training)."""
    cfg = Config.fromfile(os.path.join(REPO, config))
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    # one process evaluates both tasks: their loggers and visualizers must not be shared
    name = 'untrained_' + os.path.splitext(os.path.basename(config))[0]
    cfg.experiment_name = cfg.visualizer.name = name
    return Runner.from_cfg(cfg).test()


def losses(work_dir: str) -> tuple:
    scalars = sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json'))[-1]
    rows = [json.loads(line) for line in open(scalars)]
    rows = [r for r in rows if 'loss' in r]
    return [r['iter'] for r in rows], [r['loss'] for r in rows]


def ensure_data() -> None:
    """(Re)write the demo data when it is missing or made by another version."""
    stamp = os.path.join(REPO, DATA, 'demo_data.json')
    from make_demo_data import DATA_VERSION  # tools/ is this script's directory
    if os.path.exists(stamp) and json.load(open(stamp)).get('version') == DATA_VERSION:
        return
    run([sys.executable, 'tools/make_demo_data.py', '--out', DATA])


def train_and_test(task: str, work_root: str) -> dict:
    config, keys = TASKS[task]
    work_dir = os.path.join(work_root, task)
    options = []
    if task == 'det':
        seg = Config.fromfile(os.path.join(REPO, TASKS['seg'][0]))
        seg_checkpoint = os.path.join(work_root, 'seg', f'iter_{seg.train_cfg.max_iters}.pth')
        options = ['--cfg-options', f'model.backbone.init_cfg.checkpoint={seg_checkpoint}']
    start = time.time()
    run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir, *options])
    minutes = (time.time() - start) / 60
    checkpoint = open(os.path.join(work_dir, 'last_checkpoint')).read().strip()
    run([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir', work_dir,
         '--show-dir', 'predictions', *options])
    trained_json = sorted(glob.glob(f'{work_dir}/*/*.json'), key=os.path.getmtime)[-1]
    trained = json.load(open(trained_json))
    untrained = evaluate_untrained(config, os.path.join(work_dir, 'untrained'))
    return dict(keys=keys, trained=trained, untrained=untrained, minutes=minutes,
                losses=losses(work_dir))


def compare_pe(work_root: str) -> dict:
    start = time.time()
    study = os.path.join(work_root, 'pe')
    run([sys.executable, 'tools/compare_pe.py', TASKS['pe'][0], *PE_STUDY, '--work-dir', study])
    return dict(minutes=(time.time() - start) / 60, study=study,
                table=open(os.path.join(study, 'summary.md')).read(),
                plots=sorted(glob.glob(os.path.join(study, 'plots', '*.png'))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS),
                        help='det alone needs a finished seg run in the work dir')
    args = parser.parse_args()
    work_root = os.path.abspath(args.work_dir)
    start = time.time()
    tasks = [t for t in TASKS if t in args.tasks]
    stage(f'step 1/{len(tasks) + 1}: demo data', start)
    ensure_data()

    results, study = {}, None
    for k, task in enumerate(tasks, 2):
        what = dict(seg='segmentation (UperNet, from scratch)',
                    det='detection (Mask R-CNN, from the seg backbone)',
                    eomt='segmentation (EoMT, from scratch)',
                    pe='PE comparison (NoPE / LearnedPE / MPVG x 2 seeds)')[task]
        stage(f'step {k}/{len(tasks) + 1}: {what}', start)
        if task == 'pe':
            study = compare_pe(work_root)
        else:
            results[task] = train_and_test(task, work_root)

    if results:
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
    if study:
        print(f"\nPE comparison ({study['minutes']:.1f} min; mIoU on the position data, "
              f"test sizes 64 = training and 96):\n\n{study['table']}")
        print(f"PE study: {study['study']}; plots: {', '.join(study['plots'])}")
    print(f'\n[demo] done in {(time.time() - start) / 60:.1f} min', flush=True)


if __name__ == '__main__':
    main()
