"""The launchers' input (tools/train.py, tools/test.py): --cfg-options, the compile
option and checkpoints given to tools/test.py, each bad one stopped with an error
naming it."""
import argparse
import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from helpers import REPO, SEG, run, seg_options, train_cmd
from mmvitpe.apis import ConfigOptionError, add_common_args, check_cfg_options, compile_arguments


@pytest.fixture(scope='module')
def seg_config():
    return Config.fromfile(os.path.join(REPO, SEG))


@pytest.mark.parametrize('option,message', [
    ('train_cfgg.max_iters', r"unknown top-level key 'train_cfgg', which nothing reads; did you "
                             r'mean train_cfg.max_iters\?'),
    ('checkpoint.interval', r"unknown top-level key 'checkpoint'.*did you mean "
                            r'default_hooks.checkpoint.interval\?'),
    ('default_hooks.checkpoint.intervl', r"default_hooks.checkpoint has no key 'intervl'; did "
                                         r'you mean default_hooks.checkpoint.interval\?'),
    ('model.backbon.depth', r"model has no key 'backbon'; did you mean model.backbone.depth\?"),
    ('train_cfg.max_iter', r'did you mean train_cfg.max_iters\?'),
    ('param_scheduler.7.end', r'param_scheduler is a list of 2 items; .7. is not an index'),
])
def test_cfg_option_that_mmengine_would_ignore_is_an_error(seg_config, option, message):
    cfg = seg_config
    with pytest.raises(ConfigOptionError, match=message):
        check_cfg_options(cfg, {option: 2})
    # keys that something reads pass (no error), a new component argument included
    check_cfg_options(cfg, {'model.backbone.pos_embed.hidden': 32, 'train_cfg.max_iters': 2,
                            'param_scheduler.1.end': 4, 'load_from': 'x.pth'})


@pytest.mark.parametrize('value,message', [
    ('yes', r"compile='yes': expected True, False or a dict of torch.compile arguments"),
    (1, r'compile=1: expected True, False'),
    (dict(bakend='aot_eager'), r'torch.compile takes no bakend; valid: .*backend'),
    (dict(fullgraph='no'), r"compile.fullgraph='no'; valid: \[True, False\]"),
    (dict(dynamic='maybe'), r"compile.dynamic='maybe'; valid: \[None, True, False\]"),
    (dict(disable=0), r'compile.disable=0; valid: \[True, False\]'),
    (dict(backend='inductr'), r"compile.backend='inductr'; valid: \[.*'inductor'"),
    (dict(mode='fast'), r"compile.mode='fast'; valid: \[None, 'default', .*'max-autotune'"),
    (dict(options=['a']), r"compile.options=\['a'\]: expected a dict of inductor options"),
])
def test_bad_compile_option_is_an_error(value, message):
    with pytest.raises(ConfigOptionError, match=message):
        compile_arguments(Config(dict(compile=value)))


@pytest.mark.parametrize('value,arguments', [
    (True, {}), (False, None), (None, None), ({}, None),
    (dict(backend='aot_eager', dynamic=True), dict(backend='aot_eager', dynamic=True)),
    (dict(mode='max-autotune', fullgraph=False), dict(mode='max-autotune', fullgraph=False))])
def test_compile_option_gives_torch_compile_arguments(value, arguments):
    cfg = Config(dict(compile=value, work_dir='w'))
    assert compile_arguments(cfg) == arguments
    assert 'compile' not in cfg  # mmengine would compile the whole train_step itself


def test_custom_keys_take_new_entries_that_look_like_existing_ones():
    # mmdet's layer-wise lr idiom: 'backbone' beside the config's 'backbone.pe.'
    cfg = Config.fromfile(
        os.path.join(REPO, 'configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py'))
    assert 'backbone.pe.' in cfg.optim_wrapper.paramwise_cfg.custom_keys
    check_cfg_options(cfg, {'optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult': 0.1})
    with pytest.raises(ConfigOptionError, match=r"did you mean optim_wrapper.paramwise_cfg"):
        check_cfg_options(cfg, {'optim_wrapper.paramwise_cfgg.custom_keys.backbone.lr_mult': 0.1})


@pytest.mark.parametrize('item', ['train_cfg.max_iters', '=2', 'model..depth=2'])
def test_malformed_cfg_option_is_a_usage_error(item, capsys):
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(['--cfg-options', item])
    assert exit_.value.code == 2
    assert f"--cfg-options '{item}': expected KEY=VALUE" in capsys.readouterr().err


def test_test_py_refuses_a_checkpoint_that_does_not_fit_unless_asked(demo_data, tmp_path):
    import timm
    path = str(tmp_path / 'resnet18.pth')
    torch.save(timm.create_model('resnet18', pretrained=False).state_dict(), path)
    cmd = [sys.executable, 'tools/test.py', SEG, path, '--work-dir', str(tmp_path),
           '--cfg-options', *seg_options(demo_data, iters=2)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert f'error: {path} does not fit EncoderDecoder: weights the checkpoint lacks: ' \
           '[backbone.' in out.stderr
    assert '--no-strict' in out.stderr
    assert not glob.glob(f'{tmp_path}/*/*.json')  # no metrics were written
    run(cmd + ['--no-strict'])
    assert glob.glob(f'{tmp_path}/*/*.json')


def test_bad_pe_name_on_the_command_line_is_a_clear_error(demo_data, tmp_path):
    cmd = train_cmd(SEG, tmp_path, seg_options(demo_data) + ['model.backbone.pos_embed.type=Sinus'])
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "unknown positional encoding type 'Sinus'; valid types: [" in out.stderr
    assert "'FactorizedPE'" in out.stderr
