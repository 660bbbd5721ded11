"""End to end through the real Runner on the built-in demo data (CPU)."""
import glob
import math
import os
import sys

import pytest
from mmengine.utils import get_installed_path

from mmvitpe.weights import read_state_dict

from helpers import DET, SEG, det_options, logged, run, seg_options, train_cmd


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
    # no validation: it would trace the eval-mode graph as well
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=2)
                        + ['compile.backend=aot_eager', 'compile.fullgraph=True',
                           'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None']))
    assert "compiled the backbone (ViTAdapter) with torch.compile({'backend': 'aot_eager', " \
        "'fullgraph': True})" in out.stdout + out.stderr
    losses = logged(tmp_path, 'loss')
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='reads the threads from /proc')
def test_two_process_gloo_training_writes_one_checkpoint(demo_data, tmp_path):
    """Each rank also ends its process group's gloo threads before the interpreter
    shuts down: one still freeing a collective's tensors then would abort the
    finished run ("terminate called without an active exception")."""
    then_threads = tmp_path / 'then_threads.py'  # runs tools/train.py, then lists the threads
    then_threads.write_text(
        'import os, runpy, sys\n'
        'sys.argv = sys.argv[1:]\n'
        'sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))\n'
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "names = sorted(open(f'/proc/self/task/{t}/comm').read().strip()\n"
        "               for t in os.listdir('/proc/self/task'))\n"
        'sys.stdout.flush()\n'
        # one write of the whole line: the other rank's line cannot land inside it
        "os.write(1, f'threads left: {names}\\n'.encode())\n")
    launcher = (sys.executable, '-m', 'torch.distributed.run', '--standalone',
                '--nproc_per_node=2', str(then_threads), 'tools/train.py')
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=4), launcher=launcher)
              + ['--launcher', 'pytorch'])
    text = out.stdout + out.stderr
    assert "'world_size': 2" in text or 'world_size: 2' in text or 'Distributed training: True' in text
    assert sorted(os.path.basename(p) for p in glob.glob(f'{tmp_path}/*.pth')) == ['iter_4.pth']
    left = [line for line in out.stdout.splitlines() if line.startswith('threads left:')]
    assert len(left) == 2 and not any('gloo' in line for line in left), left


@pytest.mark.parametrize('package,config', [('mmdet', DET), ('mmseg', SEG)])
def test_upstream_train_py_runs_our_configs(demo_data, tmp_path, package, config):
    upstream = os.path.join(get_installed_path(package), '.mim', 'tools', 'train.py')
    options = (det_options(demo_data, epochs=1) if package == 'mmdet'
               else seg_options(demo_data, iters=2))
    # upstream tools know nothing of mmvitpe: custom_imports in the config does it
    run(train_cmd(config, tmp_path, options, launcher=(sys.executable, upstream)),
        env={**os.environ, 'PYTHONPATH': ''})
    assert sorted(os.path.basename(p) for p in glob.glob(f'{tmp_path}/*.pth')) == [
        'epoch_1.pth' if package == 'mmdet' else 'iter_2.pth']
    # the trained model is ours: the demo configs' ViT-Adapter with MPVG's final-norm term
    state = read_state_dict(glob.glob(f'{tmp_path}/*.pth')[0])
    assert 'backbone.interactions.0.injector.gamma' in state
    assert 'backbone.pe.last_norm_layer.weight' in state


def test_test_py_writes_metrics_and_drawn_predictions(demo_data, tmp_path):
    run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=2)))
    out = run([sys.executable, 'tools/test.py', SEG, str(tmp_path / 'iter_2.pth'),
               '--work-dir', str(tmp_path), '--show-dir', 'shown', '--out', str(tmp_path / 'pred'),
               '--cfg-options', *seg_options(demo_data, iters=2)])
    assert 'mIoU' in out.stdout + out.stderr
    assert len(glob.glob(f'{tmp_path}/pred/*.png')) == 4
    assert glob.glob(f'{tmp_path}/**/shown/**/*.png', recursive=True)
