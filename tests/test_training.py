"""End to end through the real Runner on the built-in demo data (CPU)."""
import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from mmengine.utils import get_installed_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET = 'configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py'
SEG = 'configs/demo/upernet_vit-adapter-t-mpvg_demo.py'
TINY_BACKBONE = ['model.backbone.embed_dim=64', 'model.backbone.num_heads=4',
                 'model.backbone.depth=4', 'model.backbone.deform_num_heads=4',
                 'model.backbone.conv_inplane=16',
                 'model.backbone.interaction_indexes=[[0,0],[1,1],[2,2],[3,3]]']


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(root),
                    '--train', '16', '--val', '4', '--size', '128'], cwd=REPO, check=True)
    return str(root)


def det_options(data, epochs=2):
    coco = f'{data}/coco/'
    return TINY_BACKBONE + [
        'model.backbone.init_cfg=None',  # the demo starts from the seg demo's backbone
        'model.backbone.window_block_indexes=[0,2]', 'model.neck.in_channels=[64,64,64,64]',
        f'train_dataloader.dataset.data_root={coco}', f'val_dataloader.dataset.data_root={coco}',
        f'test_dataloader.dataset.data_root={coco}',
        f'val_evaluator.ann_file={coco}annotations/instances_val.json',
        f'test_evaluator.ann_file={coco}annotations/instances_val.json',
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.logger.interval=1']


def seg_options(data, iters=8, checkpoint_every=None):
    ade = f'{data}/ade/'
    return TINY_BACKBONE + ['optim_wrapper.optimizer.lr=1e-3', 'param_scheduler.0.end=2',
                            'default_hooks.checkpoint.max_keep_ckpts=-1',
        'model.decode_head.in_channels=[64,64,64,64]', 'model.auxiliary_head.in_channels=64',
        f'train_dataloader.dataset.data_root={ade}', f'val_dataloader.dataset.data_root={ade}',
        f'test_dataloader.dataset.data_root={ade}', f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={checkpoint_every or iters}',
        'default_hooks.logger.interval=1']


def run(args, timeout=600, **kw):
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out


def train_cmd(config, work_dir, options, launcher=(sys.executable, 'tools/train.py')):
    return [*launcher, config, '--work-dir', str(work_dir), '--cfg-options', *options]


def logged(work_dir, key):
    """Values of a scalar logged during training, in order."""
    files = glob.glob(f'{work_dir}/*/vis_data/scalars.json')
    assert files, f'no scalars logged under {work_dir}'
    rows = [json.loads(line) for line in open(sorted(files)[-1])]
    return [r[key] for r in rows if key in r]


def test_detection_trains_validates_and_lowers_the_loss(demo_data, tmp_path):
    # 16 iterations, a higher lr than the demo's and a 2-iteration warm-up (the demo's 40
    # would span them all), so the drop is well clear of noise (12 gave 0.80-0.81)
    out = run(train_cmd(DET, tmp_path, det_options(demo_data, epochs=4)
                        + ['optim_wrapper.optimizer.lr=1e-3', 'param_scheduler.0.end=2']))
    losses = logged(tmp_path, 'loss')
    assert len(losses) == 16
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert 'coco/bbox_mAP' in out.stdout + out.stderr
    assert os.path.exists(tmp_path / 'epoch_4.pth')


def test_segmentation_trains_validates_and_lowers_the_loss(demo_data, tmp_path):
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=12)))
    losses = logged(tmp_path, 'loss')
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert 'mIoU' in out.stdout + out.stderr


def test_compile_option_trains_with_a_compiled_backbone(demo_data, tmp_path):
    # aot_eager: dynamo and AOT autograd as with inductor, without its code generation
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=2)
                        + ['compile.backend=aot_eager', 'compile.fullgraph=True']))
    assert "compiled the backbone (ViTAdapter) with torch.compile({'backend': 'aot_eager', " \
        "'fullgraph': True})" in out.stdout + out.stderr
    losses = logged(tmp_path, 'loss')
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_a_killed_run_resumes(demo_data, tmp_path):
    """Kill -9 after a checkpoint, then --resume finishes from it (torch >= 2.6 loading)."""
    cmd = train_cmd(SEG, tmp_path, seg_options(demo_data, iters=200, checkpoint_every=2))
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(tmp_path / 'last_checkpoint') and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)  # let the checkpoint file be complete before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = open(tmp_path / 'last_checkpoint').read().strip()
    done = int(last.rsplit('iter_', 1)[1].split('.')[0])
    target = done + 2
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=target, checkpoint_every=2))
              + ['--resume'])
    assert f'resumed epoch: 0, iter: {done}' in out.stdout + out.stderr
    assert os.path.exists(tmp_path / f'iter_{target}.pth')


def test_two_process_gloo_training_writes_one_checkpoint(demo_data, tmp_path):
    launcher = (sys.executable, '-m', 'torch.distributed.run', '--standalone',
                '--nproc_per_node=2', 'tools/train.py')
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=4), launcher=launcher)
              + ['--launcher', 'pytorch'])
    text = out.stdout + out.stderr
    assert "'world_size': 2" in text or 'world_size: 2' in text or 'Distributed training: True' in text
    assert sorted(os.path.basename(p) for p in glob.glob(f'{tmp_path}/*.pth')) == ['iter_4.pth']


@pytest.mark.parametrize('package,config', [('mmdet', DET), ('mmseg', SEG)])
def test_upstream_train_py_runs_our_configs(demo_data, tmp_path, package, config):
    upstream = os.path.join(get_installed_path(package), '.mim', 'tools', 'train.py')
    options = (det_options(demo_data, epochs=1) if package == 'mmdet'
               else seg_options(demo_data, iters=2))
    # upstream tools know nothing of mmvitpe: custom_imports in the config does it
    run(train_cmd(config, tmp_path, options, launcher=(sys.executable, upstream)),
        env={**os.environ, 'PYTHONPATH': ''})
    assert glob.glob(f'{tmp_path}/*.pth')


def test_bad_pe_name_on_the_command_line_is_a_clear_error(demo_data, tmp_path):
    cmd = train_cmd(SEG, tmp_path, seg_options(demo_data) + ['model.backbone.pos_embed.type=Sinus'])
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "unknown positional encoding type 'Sinus'; valid types: [" in out.stderr
    assert "'FactorizedPE'" in out.stderr


def test_test_py_writes_metrics_and_drawn_predictions(demo_data, tmp_path):
    run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=2)))
    out = run([sys.executable, 'tools/test.py', SEG, str(tmp_path / 'iter_2.pth'),
               '--work-dir', str(tmp_path), '--show-dir', 'shown', '--out', str(tmp_path / 'pred'),
               '--cfg-options', *seg_options(demo_data, iters=2)])
    assert 'mIoU' in out.stdout + out.stderr
    assert len(glob.glob(f'{tmp_path}/pred/*.png')) == 4
    assert glob.glob(f'{tmp_path}/**/shown/**/*.png', recursive=True)
