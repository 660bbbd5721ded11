"""Bad configs, files and resumes: each gets a clear error naming the culprit,
never silent acceptance, a crash or a hang (issue 12)."""
import argparse
import contextlib
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import _load_checkpoint

from mmvitpe.apis import (ConfigOptionError, add_common_args, apply_resume_policy,
                          check_cfg_options, check_resume_fits, compile_arguments,
                          read_training_checkpoint)
from mmvitpe.models import PEViT, ViTAdapter, ViTBaseline
from mmvitpe.weights import (CheckpointError, IncompatibleCheckpointError, load_pretrained,
                             read_state_dict, remap)
from test_training import REPO, SEG, demo_data, run, seg_options, train_cmd  # noqa: F401

TWO = [[0, 0], [1, 1]]


def vit(**kw):
    return PEViT(**{**dict(embed_dim=32, depth=2, num_heads=4, pretrain_size=64), **kw})


def scheme(name, **kw):
    return vit(pos_embed=dict(type=name, **kw))


def adapter(**kw):
    return ViTAdapter(**{**dict(embed_dim=32, depth=2, num_heads=2, deform_num_heads=2,
                                conv_inplane=8, n_points=2, interaction_indexes=TWO,
                                pretrain_size=64), **kw})


def baseline(**kw):
    return ViTBaseline(**{**dict(embed_dim=32, depth=4, num_heads=4, pretrain_size=64), **kw})


def layer_decay(**paramwise_cfg):
    return build_optim_wrapper(vit(), dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
        constructor='mmvitpe.LayerDecayOptimizerConstructor', paramwise_cfg=paramwise_cfg))


# ---- 3. model arguments: validated once, named in the error ------------------------------
BAD_ARGUMENTS = [
    # (build, kwargs, error, message)
    (vit, dict(embed_dim='64'), TypeError, r"PEViT: embed_dim='64' must be an int, got str"),
    (vit, dict(depth=4.0), TypeError, r'PEViT: depth=4.0 must be an int, got float'),
    (vit, dict(num_heads=True), TypeError, r'PEViT: num_heads=True must be an int'),
    (vit, dict(embed_dim=0), ValueError, r'PEViT: embed_dim=0 must be an int >= 1'),
    (vit, dict(depth=0), ValueError, r'PEViT: depth=0 must be an int >= 1'),
    (vit, dict(num_heads=-2), ValueError, r'PEViT: num_heads=-2 must be an int >= 1'),
    (vit, dict(embed_dim=30), ValueError, r'embed_dim=30 is not divisible by num_heads=4'),
    (vit, dict(arch=['tiny']), TypeError, r"arch=\['tiny'\] must be one of \['base'"),
    (vit, dict(patch_size=0), ValueError, r'PEViT: patch_size=0 must be an int >= 1'),
    (vit, dict(patch_size='16'), TypeError, r"PEViT: patch_size='16' must be an int"),
    (vit, dict(in_channels=0), ValueError, r'PEViT: in_channels=0 must be an int >= 1'),
    (vit, dict(pretrain_size=(64,)), TypeError,
     r'PEViT: pretrain_size=\(64,\) must be an int or an \(h, w\) pair'),
    (vit, dict(pretrain_size=8), ValueError,
     r'pretrain_size=\(8, 8\) with patch_size=16 gives a 0x0 patch grid'),
    (vit, dict(pretrain_size=(64, 0)), ValueError, r'pretrain_size\[1\]=0 must be an int >= 1'),
    (vit, dict(mlp_ratio=0), ValueError, r'PEViT: mlp_ratio=0 must be in \(0.0, inf\)'),
    (vit, dict(mlp_ratio=0.01), ValueError, r'mlp_ratio=0.01 gives a zero-width MLP'),
    (vit, dict(drop_path_rate=2.0), ValueError,
     r'PEViT: drop_path_rate=2.0 must be in \[0.0, 1.0\)'),
    (vit, dict(drop_rate=-0.1), ValueError, r'PEViT: drop_rate=-0.1 must be in \[0.0, 1.0\)'),
    (vit, dict(attn_drop_rate='0.1'), TypeError, r"attn_drop_rate='0.1' must be a number"),
    (vit, dict(norm_eps=0), ValueError, r'PEViT: norm_eps=0 must be in \(0.0, inf\)'),
    (vit, dict(num_classes=-1), ValueError, r'PEViT: num_classes=-1 must be an int >= 0'),
    (vit, dict(class_token='yes'), TypeError, r"class_token='yes' must be True or False"),
    (vit, dict(window_size=2), ValueError, r'window_size=2 without window_block_indexes'),
    (vit, dict(window_size=8, window_block_indexes=[0]), ValueError,
     r'window_size 8 is larger than the 4x4 patch grid'),
    (vit, dict(window_size=-1), ValueError, r'PEViT: window_size=-1 must be an int >= 0'),
    (vit, dict(window_size=2, window_block_indexes=1), TypeError,
     r'window_block_indexes=1 must be a list of ints, got int'),
    (vit, dict(window_size=[2, 'x']), TypeError, r"window_size\[1\]='x' must be an int"),
    (adapter, dict(conv_inplane=0), ValueError, r'ViTAdapter: conv_inplane=0 must be an int >= 1'),
    (adapter, dict(n_points=0), ValueError, r'ViTAdapter: n_points=0 must be an int >= 1'),
    (adapter, dict(deform_num_heads=0), ValueError,
     r'ViTAdapter: deform_num_heads=0 must be an int >= 1'),
    (adapter, dict(deform_num_heads=3), ValueError,
     r'deform_num_heads=3 with deform_ratio=1.0 at embed_dim=32'),
    (adapter, dict(deform_ratio=0.01), ValueError,
     r'deform_ratio=0.01 at embed_dim=32: .* value width .* = 0'),
    (adapter, dict(deform_ratio=0), ValueError, r'ViTAdapter: deform_ratio=0 must be in \(0.0'),
    (adapter, dict(interaction_indexes=[0, 1]), TypeError,
     r'interaction_indexes=\[0, 1\] must be a list of \[first, last\] block pairs'),
    (adapter, dict(interaction_indexes=[]), ValueError,
     r'interaction_indexes \[\] must cover blocks 0..1'),
    (adapter, dict(interaction_indexes=[[0, 0], [1, 1.5]]), TypeError,
     r'interaction_indexes\[1\]\[1\]=1.5 must be an int'),
    (adapter, dict(norm_cfg='BN'), TypeError,
     r"ViTAdapter: norm_cfg='BN' must be a config dict such as dict\(type='BN'\)"),
    (adapter, dict(preset=['tiny']), ValueError, r"unknown preset \['tiny'\]"),
    (adapter, dict(cffn_ratio=0), ValueError, r'ViTAdapter: cffn_ratio=0 must be in \(0.0'),
    (adapter, dict(init_values='0'), TypeError, r"ViTAdapter: init_values='0' must be a number"),
    (baseline, dict(out_indices=[]), ValueError, r'out_indices=\[\]: need 4 increasing'),
    (baseline, dict(out_indices=3), TypeError, r'ViTBaseline: out_indices=3 must be a list'),
    (baseline, dict(norm_cfg='BN'), TypeError, r"ViTBaseline: norm_cfg='BN' must be a config"),
    (scheme, dict(name='PEG', blocks=0), TypeError, r'PEG: blocks=0 must be a list of ints'),
    (scheme, dict(name='SPSA', blocks=[]), ValueError,
     r"SPSA: blocks=\[\] puts the scheme on no block, i.e. no PE at all; use pos_embed="
     r"dict\(type='NoPE'\)"),
    (scheme, dict(name='LaPE', blocks=[]), ValueError, r'LaPE: blocks=\[\] puts the scheme'),
    (scheme, dict(name='RelPosBias', blocks=[]), ValueError, r'RelPosBias: blocks=\[\]'),
    (scheme, dict(name='RoPEAxial', blocks=[]), ValueError, r'RoPEAxial: blocks=\[\]'),
    (scheme, dict(name='PEG', blocks=[]), ValueError, r'PEG: blocks=\[\]'),
    (scheme, dict(name='SPSA', hidden=0), ValueError, r'SPSA: hidden=0 must be an int >= 1'),
    (scheme, dict(name='SPSA', hidden=2.5), TypeError, r'SPSA: hidden=2.5 must be an int'),
    (scheme, dict(name='RoPEAxial', theta=0), ValueError, r'RoPEAxial: theta=0 must be in \(0.0'),
    (scheme, dict(name='RoPEMixed', theta=-10.), ValueError, r'RoPEMixed: theta=-10.0 must be'),
    (scheme, dict(name='SinCosPE', temperature=0), ValueError,
     r'SinCosPE: temperature=0 must be in \(0.0, inf\)'),
    (scheme, dict(name='SinCosPE', temperature=float('nan')), ValueError,
     r'SinCosPE: temperature=nan must be in'),
    (scheme, dict(name='RelPosBias', table_grid=(0, 4)), ValueError,
     r'RelPosBias: table_grid\[0\]=0 must be an int >= 1'),
    (scheme, dict(name='LearnedPE', interpolation='cubic'), ValueError,
     r"interpolation='cubic'; valid: \('nearest'"),
    (scheme, dict(name='LaPE', norm_eps=0), ValueError, r'LaPE: norm_eps=0 must be in'),
    (layer_decay, dict(decay_rate='0.9'), TypeError,
     r"paramwise_cfg.decay_rate='0.9' must be a number"),
    (layer_decay, dict(decay_rate=0), ValueError,
     r'paramwise_cfg.decay_rate=0 must be in \(0.0, 1.0\]'),
    (layer_decay, dict(layer_decay_rate=0.9, num_layers=2.0), TypeError,
     r'paramwise_cfg.num_layers=2.0 must be an int'),
]


@pytest.mark.parametrize('build,kwargs,error,message', BAD_ARGUMENTS,
                         ids=[f'{b.__name__}-{"-".join(f"{k}={v}" for k, v in kw.items())}'
                              for b, kw, _, _ in BAD_ARGUMENTS])
def test_bad_argument_is_refused_at_construction_naming_it(build, kwargs, error, message):
    kwargs = dict(kwargs)
    with pytest.raises(error, match=message):
        build(kwargs.pop('name'), **kwargs) if build is scheme else build(**kwargs)


@pytest.mark.parametrize('build', [vit, adapter, baseline], ids=['PEViT', 'ViTAdapter',
                                                                  'ViTBaseline'])
@pytest.mark.parametrize('shape', [(3, 64, 64), (1, 1, 3, 64, 64), (2, 1, 64, 64)],
                         ids=['3-D', '5-D', '1-channel'])
def test_wrong_input_shape_says_the_expected_shape(build, shape):
    model = build().eval()
    with pytest.raises(ValueError, match=r'expected an image batch of shape \(B, 3, H, W\), got '
                       + r'\(' + r', '.join(map(str, shape))):
        model(torch.zeros(shape))


def test_adapter_takes_one_channel_images_and_empty_batches():
    model = adapter(in_channels=1).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 1, 64, 96))
        empty = adapter().eval()(torch.randn(0, 3, 64, 96))
    assert [o.shape for o in outs] == [(2, 32, 16, 24), (2, 32, 8, 12), (2, 32, 4, 6),
                                       (2, 32, 2, 3)]
    assert [o.shape for o in empty] == [(0, 32, 16, 24), (0, 32, 8, 12), (0, 32, 4, 6),
                                        (0, 32, 2, 3)]


@pytest.mark.parametrize('dtype,tolerance', [(torch.float64, 1e-5), (torch.float16, 0.05),
                                             (torch.bfloat16, 0.05)])
def test_adapter_converted_to_another_dtype_runs_in_it(dtype, tolerance):
    """Policy: the whole model runs in its dtype, except the deformable attention,
    whose parameters stay fp32 under .half()/.bfloat16() (it computes in fp32)."""
    model = adapter().eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(img)
        converted = model.to(dtype)
        outs = converted(img.to(dtype))
    attn = converted.interactions[0].injector.attn
    assert attn.value_proj.weight.dtype == (dtype if dtype == torch.float64 else torch.float32)
    assert converted.blocks[0].attn.qkv.weight.dtype == dtype
    for out, expected in zip(outs, ref):
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert (out.double() - expected.double()).abs().mean() < tolerance * expected.abs().mean()


# ---- 1. checkpoint reading terminates and stays bounded ---------------------------------
def _cyclic(path):
    d = {'w': torch.zeros(2)}
    d['state_dict'] = d
    torch.save(d, path)


def _deep(path):
    d = {'w': torch.zeros(2)}
    for _ in range(12):
        d = {'state_dict': d}
    torch.save(d, path)


def _expanded(path):
    # 1.8 KB on disk, (1, 1 + 4000^2, 32) fp16 positions: 1 GiB once materialised
    torch.save({'pos_embed': torch.zeros(1, 1, 32, dtype=torch.half).expand(1, 1 + 4000 ** 2, 32),
                'cls_token': torch.zeros(1, 1, 32)}, path)


def _truncated(path):
    torch.save({'w': torch.zeros(1000)}, path)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


HOSTILE_FILES = {
    # name: (writer, error message)
    'cyclic': (_cyclic, r'its container refers to itself'),
    'deep': (_deep, r'containers nested deeper than 8 levels'),
    'expanded': (_expanded, r"'pos_embed' is a \(1, 16000001, 32\) view of 64 stored bytes"),
    'zero-bytes': (lambda p: open(p, 'wb').close(),
                   r'truncated or not a PyTorch checkpoint \(0 bytes\).*copy or download it '
                   r'again'),
    'random-bytes': (lambda p: open(p, 'wb').write(np.random.default_rng(0).bytes(4096)),
                     r'(not a readable|truncated or not a) PyTorch checkpoint'),
    'truncated': (_truncated, r'truncated or not a PyTorch checkpoint.*delete it'),
    'duplicate-module-key': (
        lambda p: torch.save({'w': torch.zeros(2), 'module.w': torch.ones(2)}, p),
        r"'w' and 'module.w' are both present and name the same parameter"),
}


@contextlib.contextmanager
def deadline(seconds):
    """Fail instead of hanging (the cyclic file looped forever before)."""
    def expire(*_):
        raise TimeoutError(f'still running after {seconds} s')
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize('reader', ['read_state_dict', 'mmengine'])
@pytest.mark.parametrize('kind', sorted(HOSTILE_FILES))
def test_hostile_file_ends_in_an_error_naming_the_file(tmp_path, kind, reader):
    """Our reader and mmengine's loader (--resume, load_from, tools/test.py) alike."""
    write, message = HOSTILE_FILES[kind]
    path = str(tmp_path / f'{kind}.pth')
    write(path)
    load = read_state_dict if reader == 'read_state_dict' else _load_checkpoint
    with deadline(30), pytest.raises(CheckpointError, match=message) as err:
        load(path)
    assert path in str(err.value)


@pytest.mark.parametrize('value,kind', [
    (np.zeros((1, 4, 32), dtype=np.float32), 'numpy.ndarray'), ([0.1, 0.2], 'list'),
    (3, 'int'), ('zeros', 'str')], ids=['numpy', 'list', 'int', 'str'])
def test_non_tensor_under_a_parameter_key_is_named(tmp_path, value, kind):
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {'blocks.0.norm1.weight': torch.ones(32), 'pos_embed': value}},
               path)
    with pytest.raises(CheckpointError, match=rf"{path}: 'pos_embed' holds a value of type "
                                              rf'{kind}, not a tensor'):
        read_state_dict(path)


def test_expanded_table_is_refused_before_any_copy_with_bounded_memory(tmp_path):
    path = str(tmp_path / 'huge_pos_embed.pth')
    _expanded(path)
    assert os.path.getsize(path) < 4096
    model = PEViT(embed_dim=32, depth=1, num_heads=4, pretrain_size=64, class_token=True,
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(CheckpointError, match=r"'pos_embed' is a \(1, 16000001, 32\) view"):
        model.init_weights()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


# ---- 2. resume and evaluation ------------------------------------------------------------
def test_resume_refuses_a_bare_state_dict_pointing_to_load_from(tmp_path):
    path = str(tmp_path / 'deit.pth')
    torch.save({'model': vit().state_dict()}, path)  # as DeiT/timm release them
    cfg = Config(dict(resume=True, load_from=path, work_dir=str(tmp_path)))
    with pytest.raises(CheckpointError, match=rf'{path} is not a resumable training checkpoint'
                                              r'.*load_from=.*init_cfg.checkpoint='):
        apply_resume_policy(cfg)


def _training_checkpoint(model, scheme_text, iteration=2):
    return {'meta': {'epoch': 0, 'iter': iteration,
                     'cfg': f"model = dict(backbone=dict(pos_embed=dict(type='{scheme_text}')))"},
            'state_dict': model.state_dict(), 'message_hub': {}}


@pytest.mark.parametrize('saved,now,message', [
    ('NoPE', 'SinCosPE', r"trained with the positional encoding \['NoPE'\], the model now uses "
                         r"\['SinCosPE'\]"),
    ('LearnedPE', 'RoPEMixed', r"trained with the positional encoding \['LearnedPE'\]"),
], ids=['parameter-free-switch', 'parameter-switch'])
def test_resume_detects_a_switched_scheme(saved, now, message):
    checkpoint = _training_checkpoint(scheme(saved), saved)
    with pytest.raises(CheckpointError, match=message + r'.*load_from=ckpt.pth without --resume'):
        check_resume_fits(scheme(now), checkpoint, 'ckpt.pth')
    checkpoint['meta']['cfg'] = ''  # an older config text: the tensors still tell
    if saved == 'LearnedPE':
        with pytest.raises(CheckpointError, match=r'The positional encoding changed .*'
                                                  r'pe.table.weight.*pe.freqs'):
            check_resume_fits(scheme(now), checkpoint, 'ckpt.pth')
    check_resume_fits(scheme(saved), _training_checkpoint(scheme(saved), saved), 'ckpt.pth')


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
    check_cfg_options(cfg, {'model.backbone.pos_embed.hidden': 32, 'train_cfg.max_iters': 2,
                            'param_scheduler.1.end': 4, 'load_from': 'x.pth'})


@pytest.mark.parametrize('value,message', [
    ('yes', r"compile='yes': expected True, False or a dict of torch.compile arguments"),
    (1, r'compile=1: expected True, False'),
    (dict(bakend='aot_eager'), r'torch.compile takes no bakend; valid: .*backend'),
])
def test_bad_compile_option_is_an_error(value, message):
    with pytest.raises(ConfigOptionError, match=message):
        compile_arguments(Config(dict(compile=value)))


@pytest.mark.parametrize('value,arguments', [
    (True, {}), (False, None), (None, None), ({}, None),
    (dict(backend='aot_eager', dynamic=True), dict(backend='aot_eager', dynamic=True))])
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


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):  # noqa: F811
    """A tiny segmentation run with checkpoints at iterations 2 and 4."""
    work_dir = tmp_path_factory.mktemp('run')
    run(train_cmd(SEG, work_dir, seg_options(demo_data, iters=4, checkpoint_every=2)))
    return work_dir


def test_resume_without_marker_continues_from_the_newest_and_keeps_the_rest(
        trained, demo_data, tmp_path):  # noqa: F811
    work_dir = tmp_path / 'run'
    shutil.copytree(trained, work_dir)
    os.remove(work_dir / 'last_checkpoint')
    kept = {n: os.stat(work_dir / n).st_mtime_ns for n in ('iter_2.pth', 'iter_4.pth')}
    out = run(train_cmd(SEG, work_dir, seg_options(demo_data, iters=6, checkpoint_every=2))
              + ['--resume'])
    text = out.stdout + out.stderr
    assert 'resuming from its newest readable checkpoint' in text
    assert 'resumed epoch: 0, iter: 4' in text
    assert {n: os.stat(work_dir / n).st_mtime_ns for n in kept} == kept
    assert (work_dir / 'iter_6.pth').exists()


def test_auto_resume_with_damaged_checkpoints_says_what_to_do(trained, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(trained, work_dir)
    cfg = Config(dict(resume=True, load_from=None, work_dir=str(work_dir)))
    latest = str(work_dir / 'iter_4.pth')
    (work_dir / 'last_checkpoint').write_text(latest)  # the copy's, not the original run's
    _truncated(latest)
    with pytest.raises(CheckpointError, match=rf'{latest}: truncated .*delete it \(and the work '
                                              r"dir's last_checkpoint file\)"):
        apply_resume_policy(cfg)
    os.remove(work_dir / 'last_checkpoint')  # without the marker: the newest readable one
    assert apply_resume_policy(cfg) == str(work_dir / 'iter_2.pth')
    assert read_training_checkpoint(cfg.load_from)['meta']['iter'] == 2
    _truncated(str(work_dir / 'iter_2.pth'))
    cfg.load_from = None
    with pytest.raises(CheckpointError, match=r'(?s)holds checkpoints but no last_checkpoint file '
                                              r'and no readable training checkpoint.*would '
                                              r'overwrite'):
        apply_resume_policy(cfg)


def test_test_py_refuses_a_checkpoint_that_does_not_fit_unless_asked(trained, demo_data,
                                                                     tmp_path):  # noqa: F811
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


AMBIGUOUS_GRIDS = [(3, 5), (4, 2), (4, 6), (7, 9)]  # 1 + h*w is a perfect square


@pytest.mark.parametrize('grid', AMBIGUOUS_GRIDS, ids=[f'{h}x{w}' for h, w in AMBIGUOUS_GRIDS])
@pytest.mark.parametrize('name', ['LearnedPE', 'LaPE', 'PVG', 'MPVG'])
def test_table_with_a_class_slot_at_the_models_grid_is_read_as_such(name, grid):
    """1 + h*w entries at this model's grid: slot + this grid, not a square grid
    without a slot (that misreading loaded a resized table and passed strict)."""
    model = PEViT(embed_dim=32, depth=2, num_heads=4, pretrain_size=(16 * grid[0], 16 * grid[1]),
                  pos_embed=dict(type=name))
    table = torch.randn(1, 1 + grid[0] * grid[1], 32)
    mapped, _ = remap({'pos_embed': table}, model)
    torch.testing.assert_close(mapped['pe.table.weight'], table[:, 1:])
    with_slot = PEViT(embed_dim=32, depth=2, num_heads=4, class_token=True,
                      pretrain_size=(16 * grid[0], 16 * grid[1]),
                      pos_embed=dict(type='LaPE' if name == 'MPVG' else name))
    mapped, _ = remap({'pos_embed': table}, with_slot)  # this model's own layout, exactly
    torch.testing.assert_close(mapped['pe.table.weight'], table)


# ---- 1. transfer: what a tensor that reaches the model's parts must be ---------------------
def rope_vit_state(model, depth=None):
    """The model's tensors in rope-vit's mixed layout: freqs (2, depth, heads * d/2) and
    the token-position buffers freqs_t_x / freqs_t_y."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('pe.')}
    freqs = model.pe.freqs.detach()
    state['freqs'] = freqs.reshape(2, freqs.shape[1], -1) if depth is None else \
        torch.randn(2, depth, freqs[0, 0].numel())
    state['freqs_t_x'], state['freqs_t_y'] = torch.arange(16.) % 4, torch.arange(16.) // 4
    return state


def test_rope_vit_position_buffers_are_dropped_as_recomputed():
    model = scheme('RoPEMixed')
    report = load_pretrained(model, rope_vit_state(model), strict=True)
    assert report.dropped == {'freqs_t_x': 'buffer that RoPEMixed recomputes for every grid',
                              'freqs_t_y': 'buffer that RoPEMixed recomputes for every grid'}
    _, report = remap(rope_vit_state(model), scheme('RoPEAxial'))
    assert 'layout of RoPEMixed' in report.dropped['freqs_t_x']


def bad_tensor(name, dtype=None):
    """A source state dict for a LearnedPE PEViT (4x4 grid, D=32) with one bad entry."""
    model = scheme('LearnedPE')
    state = dict(model.state_dict())
    if name == 'pe.table.weight+pos_embed':
        state['pos_embed'] = torch.randn(1, 16, 32)
    elif name == 'pos_embed':
        del state['pe.table.weight']
        state['pos_embed'] = torch.ones(1, 17, 32).to(dtype)
    elif name == 'expanded pos_embed':
        del state['pe.table.weight']
        state['pos_embed'] = torch.zeros(1, 1, 32).expand(1, 1 + 4000 ** 2, 32)
    elif name == 'wide pos_embed':
        del state['pe.table.weight']
        state['pos_embed'] = torch.randn(1, 17, 48)
    else:
        state[name] = state[name].to(dtype)
    return model, state


TRANSFER_ERRORS = [
    # (model, source) builder args, error, message
    (('pe.table.weight+pos_embed',), IncompatibleCheckpointError,
     r'pe.table.weight and pos_embed both load into pe.table.weight'),
    (('blocks.0.norm1.weight', torch.int64), IncompatibleCheckpointError,
     r'blocks.0.norm1.weight -> blocks.0.norm1.weight: a torch.int64 tensor where the model has '
     r'torch.float32; integer values are not cast to floating-point'),
    (('blocks.1.attn.qkv.weight', torch.bool), IncompatibleCheckpointError,
     r'blocks.1.attn.qkv.weight .*torch.bool tensor .*boolean values are not cast'),
    (('patch_embed.proj.weight', torch.complex64), IncompatibleCheckpointError,
     r'patch_embed.proj.weight .*complex values are not cast'),
    (('pos_embed', torch.int64), IncompatibleCheckpointError,
     r'pos_embed: a position table must be floating point, got torch.int64'),
    (('pos_embed', torch.complex64), IncompatibleCheckpointError,
     r'pos_embed: a position table must be floating point, got torch.complex64'),
    (('expanded pos_embed',), CheckpointError,
     r"source state dict: 'pos_embed' is a \(1, 16000001, 32\) view of 128 stored bytes"),
    (('wide pos_embed',), IncompatibleCheckpointError,
     r'pos_embed: cannot fit a position table of shape \(1, 17, 48\) to \(1, 16, 32\)'),
]


@pytest.mark.parametrize('source,error,message', TRANSFER_ERRORS,
                         ids=[' '.join(map(str, s)) for s, _, _ in TRANSFER_ERRORS])
@pytest.mark.parametrize('strict', [True, False], ids=['strict', 'non-strict'])
def test_tensor_that_cannot_load_as_it_is_named_not_cast(source, error, message, strict):
    model, state = bad_tensor(*source)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=message):
        load_pretrained(model, state, strict=strict)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize('name,source,message', [
    ('RoPEMixed', 'freqs of depth 3', r'freqs: frequencies of shape \(2, 3, 16\) do not fit '
                                      r'RoPEMixed freqs \(2, 2, 4, 4\) \(depth 2, 4 heads'),
    ('RelPosBias', 'BEiT table of 6 heads',
     r'rel_pos_bias.relative_position_bias_table: relative position table of shape \(52, 6\) '
     r'does not fit RelPosBias: expected \(entries, 4 heads\)'),
])
def test_positional_tensor_of_the_models_scheme_with_another_shape_fails(name, source, message):
    model = scheme(name)
    if name == 'RoPEMixed':
        state = rope_vit_state(model, depth=3)
    else:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith('pe.')}
        state['rel_pos_bias.relative_position_bias_table'] = torch.randn(49 + 3, 6)
    with pytest.raises(IncompatibleCheckpointError, match=message):
        load_pretrained(model, state, strict=True)
