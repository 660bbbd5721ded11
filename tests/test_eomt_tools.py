"""EoMT's demo config through tools/train.py, tools/test.py and tools/compare_pe.py
on the demo data."""
import sys

from helpers import logged, run, train_cmd


def test_the_demo_config_trains_and_tests_through_the_tools(demo_data, tmp_path):
    """tools/train.py: 12 iterations (the mask annealing hook stepping the masks off),
    the loss falls, validation runs; tools/test.py evaluates the checkpoint."""
    ade = f'{demo_data}/ade/'
    options = ['model.backbone.embed_dim=64', 'model.backbone.depth=4',
               'model.backbone.num_heads=4',
               'model.backbone.mask_annealing.start_iters=[0,2]',
               'model.backbone.mask_annealing.end_iters=[6,10]',
               'param_scheduler.0.warmup_iters=[2,2]', 'param_scheduler.0.end=12',
               'optim_wrapper.optimizer.lr=4e-3', 'optim_wrapper.clip_grad=None',
               'train_cfg.max_iters=12',
               'train_cfg.val_interval=12', 'default_hooks.checkpoint.interval=12',
               'default_hooks.logger.interval=1',
               f'train_dataloader.dataset.data_root={ade}',
               f'val_dataloader.dataset.data_root={ade}',
               f'test_dataloader.dataset.data_root={ade}']
    out = run(train_cmd('configs/demo/eomt-t_demo.py', tmp_path, options))
    losses = logged(tmp_path, 'loss')
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert 'mIoU' in out.stdout + out.stderr
    tested = run([sys.executable, 'tools/test.py', 'configs/demo/eomt-t_demo.py',
                  str(tmp_path / 'iter_12.pth'), '--work-dir', str(tmp_path / 'test'),
                  '--cfg-options', *options[:5],
                  f'test_dataloader.dataset.data_root={ade}'])
    assert 'mIoU' in tested.stdout + tested.stderr


def test_compare_pe_runs_an_eomt_config_like_any_other(demo_data, tmp_path):
    """Two schemes through EoMT in one study (the queries hidden from RoPE's rotation):
    trained, evaluated, and compared in the report."""
    ade = f'{demo_data}/ade/'
    options = ['model.backbone.embed_dim=32', 'model.backbone.depth=4',
               'model.backbone.num_heads=2', 'model.backbone.mask_annealing.start_iters=[0,1]',
               'model.backbone.mask_annealing.end_iters=[2,3]',
               'param_scheduler.0.warmup_iters=[1,1]', 'param_scheduler.0.end=4',
               'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
               'default_hooks.checkpoint.interval=4',
               f'train_dataloader.dataset.data_root={ade}',
               f'val_dataloader.dataset.data_root={ade}',
               f'test_dataloader.dataset.data_root={ade}']
    run([sys.executable, 'tools/compare_pe.py', 'configs/demo/eomt-t_demo.py',
         '--schemes', 'LearnedPE', 'RoPEMixed', '--seeds', '0', '--work-dir', str(tmp_path),
         '--cfg-options', *options])
    with open(tmp_path / 'summary.md') as f:
        report = f.read()
    assert '| LearnedPE |' in report and '| RoPEMixed |' in report
