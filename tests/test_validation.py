"""Model arguments and inputs: a bad one is refused where it enters, with an error
naming it and what is valid (mmvitpe/utils/validation.py). Tools' output files: written
atomically, and never over one of the tool's inputs (mmvitpe/utils/io.py)."""
import os
import re
import subprocess
import sys

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from helpers import REPO, tiny_adapter, tiny_vit, tiny_vit_with_pe
from mmvitpe.models import ViTBaseline


def baseline(**kw):
    return ViTBaseline(**{**dict(embed_dim=32, depth=4, num_heads=4, pretrain_size=64), **kw})


def layer_decay(**paramwise_cfg):
    return build_optim_wrapper(tiny_vit(), dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
        constructor='mmvitpe.LayerDecayOptimizerConstructor', paramwise_cfg=paramwise_cfg))


# the builders' names in the test ids
BUILDER_NAMES = {tiny_vit: 'vit', tiny_adapter: 'adapter', baseline: 'baseline',
                 tiny_vit_with_pe: 'scheme', layer_decay: 'layer_decay'}


BAD_ARGUMENTS = [
    # (build, kwargs, error, message)
    (tiny_vit, dict(embed_dim='64'), TypeError, r"PEViT: embed_dim='64' must be an int, got str"),
    (tiny_vit, dict(depth=4.0), TypeError, r'PEViT: depth=4.0 must be an int, got float'),
    (tiny_vit, dict(num_heads=True), TypeError, r'PEViT: num_heads=True must be an int'),
    (tiny_vit, dict(embed_dim=0), ValueError, r'PEViT: embed_dim=0 must be an int >= 1'),
    (tiny_vit, dict(depth=0), ValueError, r'PEViT: depth=0 must be an int >= 1'),
    (tiny_vit, dict(num_heads=-2), ValueError, r'PEViT: num_heads=-2 must be an int >= 1'),
    (tiny_vit, dict(embed_dim=30), ValueError, r'embed_dim=30 is not divisible by num_heads=4'),
    (tiny_vit, dict(arch=['tiny']), TypeError, r"arch=\['tiny'\] must be one of \['base'"),
    (tiny_vit, dict(patch_size=0), ValueError, r'PEViT: patch_size=0 must be an int >= 1'),
    (tiny_vit, dict(patch_size='16'), TypeError, r"PEViT: patch_size='16' must be an int"),
    (tiny_vit, dict(in_channels=0), ValueError, r'PEViT: in_channels=0 must be an int >= 1'),
    (tiny_vit, dict(pretrain_size=(64,)), TypeError,
     r'PEViT: pretrain_size=\(64,\) must be an int or an \(h, w\) pair'),
    (tiny_vit, dict(pretrain_size=8), ValueError,
     r'pretrain_size=\(8, 8\) with patch_size=16 gives a 0x0 patch grid'),
    (tiny_vit, dict(pretrain_size=(64, 0)), ValueError,
     r'pretrain_size\[1\]=0 must be an int >= 1'),
    (tiny_vit, dict(mlp_ratio=0), ValueError, r'PEViT: mlp_ratio=0 must be in \(0.0, inf\)'),
    (tiny_vit, dict(mlp_ratio=0.01), ValueError, r'mlp_ratio=0.01 gives a zero-width MLP'),
    (tiny_vit, dict(drop_path_rate=2.0), ValueError,
     r'PEViT: drop_path_rate=2.0 must be in \[0.0, 1.0\)'),
    (tiny_vit, dict(drop_rate=-0.1), ValueError, r'PEViT: drop_rate=-0.1 must be in \[0.0, 1.0\)'),
    (tiny_vit, dict(attn_drop_rate='0.1'), TypeError, r"attn_drop_rate='0.1' must be a number"),
    (tiny_vit, dict(norm_eps=0), ValueError, r'PEViT: norm_eps=0 must be in \(0.0, inf\)'),
    (tiny_vit, dict(out_indices=True), TypeError,
     r'PEViT: out_indices=True must be a list of ints, got bool'),
    (tiny_vit, dict(out_indices=[0, 9]), ValueError,
     r'PEViT: out_indices=\[0, 9\]: \[9\] outside the block indexes'),
    (tiny_vit, dict(class_token='yes'), TypeError, r"class_token='yes' must be True or False"),
    (tiny_vit, dict(window_size=2), ValueError, r'window_size=2 without window_block_indexes'),
    (tiny_vit, dict(window_size=8, window_block_indexes=[0]), ValueError,
     r'window_size 8 is larger than the 4x4 patch grid'),
    (tiny_vit, dict(window_size=-1), ValueError, r'PEViT: window_size=-1 must be an int >= 0'),
    (tiny_vit, dict(window_size=2, window_block_indexes=1), TypeError,
     r'window_block_indexes=1 must be a list of ints, got int'),
    (tiny_vit, dict(window_size=[2, 'x']), TypeError, r"window_size\[1\]='x' must be an int"),
    (tiny_adapter, dict(conv_inplane=0), ValueError,
     r'ViTAdapter: conv_inplane=0 must be an int >= 1'),
    (tiny_adapter, dict(n_points=0), ValueError, r'ViTAdapter: n_points=0 must be an int >= 1'),
    (tiny_adapter, dict(deform_num_heads=0), ValueError,
     r'ViTAdapter: deform_num_heads=0 must be an int >= 1'),
    (tiny_adapter, dict(deform_num_heads=3), ValueError,
     r'deform_num_heads=3 with deform_ratio=1.0 at embed_dim=32'),
    (tiny_adapter, dict(deform_ratio=0.01), ValueError,
     r'deform_ratio=0.01 at embed_dim=32: .* value width .* = 0'),
    (tiny_adapter, dict(deform_ratio=0), ValueError,
     r'ViTAdapter: deform_ratio=0 must be in \(0.0'),
    (tiny_adapter, dict(interaction_indexes=[0, 1]), TypeError,
     r'interaction_indexes=\[0, 1\] must be a list of \[first, last\] block pairs'),
    (tiny_adapter, dict(interaction_indexes=[]), ValueError,
     r'interaction_indexes \[\] must cover blocks 0..1'),
    (tiny_adapter, dict(interaction_indexes=[[0, 0], [1, 1.5]]), TypeError,
     r'interaction_indexes\[1\]\[1\]=1.5 must be an int'),
    (tiny_adapter, dict(norm_cfg='BN'), TypeError,
     r"ViTAdapter: norm_cfg='BN' must be a config dict such as dict\(type='BN'\)"),
    (tiny_adapter, dict(preset=['tiny']), ValueError, r"unknown preset \['tiny'\]"),
    (tiny_adapter, dict(cffn_ratio=0), ValueError, r'ViTAdapter: cffn_ratio=0 must be in \(0.0'),
    (tiny_adapter, dict(init_values='0'), TypeError,
     r"ViTAdapter: init_values='0' must be a number"),
    (baseline, dict(out_indices=[]), ValueError, r'out_indices=\[\]: need 4 non-decreasing'),
    (baseline, dict(out_indices=3), TypeError, r'ViTBaseline: out_indices=3 must be a list'),
    (baseline, dict(norm_cfg='BN'), TypeError, r"ViTBaseline: norm_cfg='BN' must be a config"),
    (tiny_vit_with_pe, dict(name='PEG', blocks=0), TypeError,
     r'PEG: blocks=0 must be a list of ints'),
    (tiny_vit_with_pe, dict(name='SPSA', blocks=[]), ValueError,
     r"SPSA: blocks=\[\] puts the scheme on no block, i.e. no PE at all; use pos_embed="
     r"dict\(type='NoPE'\)"),
    (tiny_vit_with_pe, dict(name='LaPE', blocks=[]), ValueError,
     r'LaPE: blocks=\[\] puts the scheme'),
    (tiny_vit_with_pe, dict(name='RelPosBias', blocks=[]), ValueError, r'RelPosBias: blocks=\[\]'),
    (tiny_vit_with_pe, dict(name='RoPEAxial', blocks=[]), ValueError, r'RoPEAxial: blocks=\[\]'),
    (tiny_vit_with_pe, dict(name='PEG', blocks=[]), ValueError, r'PEG: blocks=\[\]'),
    (tiny_vit_with_pe, dict(name='SPSA', hidden=0), ValueError,
     r'SPSA: hidden=0 must be an int >= 1'),
    (tiny_vit_with_pe, dict(name='SPSA', hidden=2.5), TypeError,
     r'SPSA: hidden=2.5 must be an int'),
    (tiny_vit_with_pe, dict(name='RoPEAxial', theta=0), ValueError,
     r'RoPEAxial: theta=0 must be in \(0.0'),
    (tiny_vit_with_pe, dict(name='RoPEMixed', theta=-10.), ValueError,
     r'RoPEMixed: theta=-10.0 must be'),
    (tiny_vit_with_pe, dict(name='SinCosPE', temperature=0), ValueError,
     r'SinCosPE: temperature=0 must be in \(0.0, inf\)'),
    (tiny_vit_with_pe, dict(name='SinCosPE', temperature=float('nan')), ValueError,
     r'SinCosPE: temperature=nan must be in'),
    (tiny_vit_with_pe, dict(name='RelPosBias', table_grid=(0, 4)), ValueError,
     r'RelPosBias: table_grid\[0\]=0 must be an int >= 1'),
    (tiny_vit_with_pe, dict(name='LearnedPE', interpolation='cubic'), ValueError,
     r"interpolation='cubic'; valid: \('nearest'"),
    (tiny_vit_with_pe, dict(name='LaPE', norm_eps=0), ValueError, r'LaPE: norm_eps=0 must be in'),
    (tiny_adapter, dict(norm_cfg=dict(type='BatchNorm')), ValueError,
     r"ViTAdapter: norm_cfg type 'BatchNorm' is not a norm layer; valid: \['BN', .*'GN', .*'LN', "
     r".*'SyncBN'\]"),
    (baseline, dict(norm_cfg=dict(type='ReLU')), ValueError,
     r"ViTBaseline: norm_cfg type 'ReLU' is not a norm layer"),
    (tiny_adapter, dict(vit_feature_mode='per_stage'), ValueError,
     r"vit_feature_mode='per_stage' adds interaction i's tokens to pyramid level i: it needs 4 "
     r'interactions, got 2 \(interaction_indexes=\[\[0, 0\], \[1, 1\]\]\)'),
    (layer_decay, dict(decay_rate='0.9'), TypeError,
     r"paramwise_cfg.decay_rate='0.9' must be a number"),
    (layer_decay, dict(decay_rate=0), ValueError,
     r'paramwise_cfg.decay_rate=0 must be in \(0.0, 1.0\]'),
    (layer_decay, dict(layer_decay_rate=0.9, num_layers=2.0), TypeError,
     r'paramwise_cfg.num_layers=2.0 must be an int'),
]


@pytest.mark.parametrize('build,kwargs,error,message', BAD_ARGUMENTS,
                         ids=[f'{BUILDER_NAMES[b]}-{"-".join(f"{k}={v}" for k, v in kw.items())}'
                              for b, kw, _, _ in BAD_ARGUMENTS])
def test_bad_argument_is_refused_at_construction_naming_it(build, kwargs, error, message):
    kwargs = dict(kwargs)
    with pytest.raises(error, match=message):
        build(kwargs.pop('name'), **kwargs) if build is tiny_vit_with_pe else build(**kwargs)


@pytest.mark.parametrize('build', [tiny_vit, tiny_adapter, baseline],
                         ids=['PEViT', 'ViTAdapter', 'ViTBaseline'])
@pytest.mark.parametrize('shape', [(3, 64, 64), (1, 1, 3, 64, 64), (2, 1, 64, 64)],
                         ids=['3-D', '5-D', '1-channel'])
def test_wrong_input_shape_says_the_expected_shape(build, shape):
    model = build().eval()
    with pytest.raises(ValueError, match=r'expected an image batch of shape \(B, 3, H, W\), got '
                       + r'\(' + r', '.join(map(str, shape))):
        model(torch.zeros(shape))


NAN, INF = float('nan'), float('inf')
# the new schemes' numbers, checked as RoPEAxial's theta is: (scheme, args, error, message)
BAD_SCHEME_NUMBERS = [
    *[('RoPEDINOv3', dict(base=v), ValueError, rf'RoPEDINOv3: base={v} must be in \(0.0, inf\)')
      for v in (0, -100., NAN, INF)],
    ('RoPEDINOv3', dict(base='100'), TypeError, r"RoPEDINOv3: base='100' must be a number"),
    ('RoPEDINOv3', dict(base=1e300), ValueError,
     r'RoPEDINOv3: base=1e\+300, .* periods e\^0 .. e\^345 .* beyond float32'),
    *[('RoPEDINOv3', dict(base=None, min_period=v, max_period=10.), ValueError,
       rf'RoPEDINOv3: min_period={v} must be in \(0.0, inf\)') for v in (0., -1., NAN)],
    ('RoPEDINOv3', dict(base=None, min_period=1., max_period=INF), ValueError,
     r'RoPEDINOv3: max_period=inf must be in \(0.0, inf\)'),
    ('RoPEDINOv3', dict(base=None, min_period=40., max_period=0.5), ValueError,
     r'RoPEDINOv3: min_period=40.0 is larger than max_period=0.5'),
    ('RoPEDINOv3', dict(base=None, min_period=1e-30, max_period=1e30), ValueError,
     r'RoPEDINOv3: .* beyond float32'),
    *[('RoPEDINOv3', {name: v}, ValueError,
       rf'RoPEDINOv3: {name}={re.escape(str(v))} must be in \[{low}, 100.0\]')
      for name, low in (('shift_coords', 0.0), ('jitter_coords', 1.0), ('rescale_coords', 1.0))
      for v in (NAN, INF, -1.0, 1e30)],
    ('RoPEDINOv3', dict(rescale_coords='2'), TypeError,
     r"RoPEDINOv3: rescale_coords='2' must be a number"),
    *[('RoPEEVA02', dict(theta=v), ValueError, rf'RoPEEVA02: theta={v} must be in \(0.0, inf\)')
      for v in (0, -1e4, NAN, INF)],
    ('RoPEEVA02', dict(theta='1e4'), TypeError, r"RoPEEVA02: theta='1e4' must be a number"),
    ('RoPEEVA02', dict(ref_grid=(0, 0)), ValueError, r'RoPEEVA02: ref_grid\[0\]=0 must be an int'),
    ('RoPEEVA02', dict(ref_grid=(16, -16)), ValueError,
     r'RoPEEVA02: ref_grid\[1\]=-16 must be an int >= 1'),
    ('RoPEEVA02', dict(ref_grid=(16, 16, 16)), TypeError,
     r'RoPEEVA02: ref_grid=\(16, 16, 16\) must be an int or an \(h, w\) pair'),
    *[('LookHere', dict(global_slope=v), ValueError,
       rf'LookHere: global_slope={v} must be in \[0.0, inf\)') for v in (NAN, INF, -1.0)],
    ('LookHere', dict(global_slope='1'), TypeError, r"LookHere: global_slope='1' must be a number"),
    ('LookHere', dict(layer_slopes=(1.0, NAN)), ValueError,
     r'LookHere: layer_slopes\[1\]=nan must be in \[0.0, inf\)'),
    ('LookHere', dict(layer_slopes=1.0), TypeError,
     r'LookHere: layer_slopes=1.0 must be a pair \(first, last\)'),
    ('LookHere', dict(global_slope=1e30, layer_slopes=(1e30, 1.0)), ValueError,
     r'LookHere: global_slope=1e\+30 times layer_slopes=\(1e\+30, 1.0\) overflows float32'),
    ('EVA02PE', dict(RoPEEVA02=dict(theta=0)), ValueError,
     r'pos_embed member 1 \(RoPEEVA02\): RoPEEVA02: theta=0 must be in \(0.0'),
    ('LearnedPE', dict(interpolate_offset='0.1'), TypeError,
     r"LearnedPE: interpolate_offset='0.1' must be a number"),
]


@pytest.mark.parametrize('name,args,error,message', BAD_SCHEME_NUMBERS,
                         ids=[f'{n}-{"-".join(f"{k}={v}" for k, v in a.items())}'
                              for n, a, _, _ in BAD_SCHEME_NUMBERS])
def test_a_scheme_number_out_of_range_is_refused_naming_it(name, args, error, message):
    with pytest.raises(error, match=message):
        tiny_vit_with_pe(name, **args)


@pytest.mark.parametrize('option,message', [
    ('model.backbone.pos_embed.RoPEEVA02.theta=0',
     r'pos_embed member 1 \(RoPEEVA02\): RoPEEVA02: theta=0 must be in \(0.0, inf\)'),
    ('model.backbone.pos_embed.RoPEEVA02.theta=abc',
     r"RoPEEVA02: theta='abc' must be a number, got str"),
    ('model.backbone.pos_embed.RoPEEVA02.ref_grid=[16,0]',
     r'RoPEEVA02: ref_grid\[1\]=0 must be an int >= 1'),
])
def test_a_preset_member_number_through_cfg_options_is_refused_naming_it(option, message):
    """As the launchers read --cfg-options: a shipped config, its scheme switched to a
    preset, and a member's argument set on the command line."""
    import argparse

    from mmvitpe.apis import backbone_without_init, prepare_config
    from mmvitpe.apis.launch import CfgOptionsAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    options = parser.parse_args(['--cfg-options', 'model.backbone.pos_embed.type=EVA02PE',
                                 option]).cfg_options
    cfg = prepare_config('configs/vit_adapter_pe/upernet_vit-adapter-t-none_512x512_160k_ade20k.py',
                         options, 'none', None)
    with pytest.raises((TypeError, ValueError), match=message):
        backbone_without_init(cfg)


# ---- output files: written atomically, never over an input ----------------------------------
def test_atomic_write_replaces_the_file_only_when_the_write_completes(tmp_path):
    from mmvitpe.utils.io import atomic_write
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'previous')
    with pytest.raises(RuntimeError, match='interrupted'):
        with atomic_write(str(path)) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'half of the new')
            raise RuntimeError('interrupted')
    assert path.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['weights.pth']  # no temporary file left behind
    with atomic_write(str(path)) as tmp:
        assert os.path.basename(tmp) == 'weights.pth' and os.path.dirname(tmp) != str(tmp_path)
        torch.save({'w': torch.ones(2)}, tmp)
    assert torch.load(path)['w'].tolist() == [1., 1.]
    assert os.listdir(tmp_path) == ['weights.pth']


def test_atomic_write_moves_companion_files_and_writes_through_a_link(tmp_path):
    from mmvitpe.utils.io import atomic_write
    (tmp_path / 'real.onnx').write_bytes(b'old')
    os.symlink(tmp_path / 'real.onnx', tmp_path / 'link.onnx')
    with atomic_write(str(tmp_path / 'link.onnx')) as tmp:
        # an ONNX model over 2 GB keeps its weights in <name>.data beside it
        open(tmp, 'wb').write(b'graph')
        open(tmp + '.data', 'wb').write(b'weights')
    assert (tmp_path / 'link.onnx').is_symlink()
    assert (tmp_path / 'real.onnx').read_bytes() == b'graph'
    assert (tmp_path / 'real.onnx.data').read_bytes() == b'weights'
    assert sorted(os.listdir(tmp_path)) == ['link.onnx', 'real.onnx', 'real.onnx.data']


def test_atomic_write_names_a_bad_path(tmp_path):
    from mmvitpe.utils.io import atomic_write
    with pytest.raises(FileNotFoundError, match=r'absent/out.pth: the directory .*absent does '):
        with atomic_write(str(tmp_path / 'absent' / 'out.pth')):
            pass
    with pytest.raises(IsADirectoryError, match=rf'{tmp_path}: is a directory'):
        with atomic_write(str(tmp_path)):
            pass
    with pytest.raises(FileNotFoundError, match=r'out.pth: nothing was written'):
        with atomic_write(str(tmp_path / 'out.pth')):
            pass
    assert os.listdir(tmp_path) == []


def test_write_csv_failing_mid_table_keeps_the_previous_table(tmp_path):
    from mmvitpe.utils.tables import write_csv
    path = str(tmp_path / 'table.csv')
    write_csv([dict(a=1)], path)
    with pytest.raises(ValueError, match='not in fieldnames'):
        write_csv([dict(a=2), dict(b=3)], path)  # the second row fails after the first
    assert open(path).read().split() == ['a', '1']
    assert os.listdir(tmp_path) == ['table.csv']


def run_tool(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def tool_inputs(tmp_path):
    """A checkpoint, a one-line config, and a link to each (another name, the same file)."""
    src, config = tmp_path / 'src.pth', tmp_path / 'config.py'
    torch.save({'w': torch.zeros(2)}, src)
    config.write_text("model = dict(backbone=dict(type='mmvitpe.PEViT', arch='tiny', depth=1))\n")
    for path in (src, config):
        os.symlink(path, tmp_path / f'link_to_{path.name}')
    return {p.name: p for p in tmp_path.iterdir()}


@pytest.mark.parametrize('out,input_name', [('src.pth', 'SRC'), ('config.py', 'CONFIG'),
                                            ('link_to_src.pth', 'SRC'),
                                            ('link_to_config.py', 'CONFIG')])
def test_convert_weights_refuses_to_overwrite_its_inputs(tool_inputs, out, input_name):
    before = {name: path.read_bytes() for name, path in tool_inputs.items()}
    done = run_tool('tools/convert_weights.py', tool_inputs['src.pth'],
                    tool_inputs['config.py'], tool_inputs[out])
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(rf'OUT {re.escape(str(tool_inputs[out]))} is the {input_name} ',
                     done.stderr), done.stderr
    assert {name: path.read_bytes() for name, path in tool_inputs.items()} == before


@pytest.mark.parametrize('out,input_name', [('src.pth', 'CHECKPOINT'), ('config.py', 'CONFIG'),
                                            ('link_to_config.py', 'CONFIG')])
def test_export_onnx_refuses_to_overwrite_its_inputs(tool_inputs, out, input_name):
    before = {name: path.read_bytes() for name, path in tool_inputs.items()}
    done = run_tool('tools/deployment/export_onnx.py', tool_inputs['config.py'],
                    tool_inputs['src.pth'], '--shape', 32, 32, '--out', tool_inputs[out])
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(rf'--out {re.escape(str(tool_inputs[out]))} is the {input_name} ',
                     done.stderr), done.stderr
    assert {name: path.read_bytes() for name, path in tool_inputs.items()} == before


@pytest.mark.parametrize('option,message', [
    ('model.backbone.dpeth=1', r"--cfg-options model.backbone.dpeth: model.backbone has no key "
                               r"'dpeth'; did you mean model.backbone.depth\?"),
    ('model.backbone.depth', r"--cfg-options 'model.backbone.depth': expected KEY=VALUE"),
])
def test_convert_weights_checks_its_cfg_options_as_the_launchers_do(tool_inputs, tmp_path,
                                                                    option, message):
    done = run_tool('tools/convert_weights.py', tool_inputs['src.pth'],
                    tool_inputs['config.py'], tmp_path / 'out.pth', '--cfg-options', option)
    assert done.returncode != 0 and re.search(message, done.stderr), done.stderr
    assert not (tmp_path / 'out.pth').exists()
