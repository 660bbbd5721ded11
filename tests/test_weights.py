"""Bringing released weights in: formats, layouts, PE schemes, safety, reports."""
import os
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from helpers import FIXTURES, tiny_vit, tiny_vit_with_pe
from mmvitpe.models import PEViT, ViTAdapter
from mmvitpe.weights import CheckpointError, IncompatibleCheckpointError, load_pretrained, remap

FOUR = [[0, 0], [1, 1], [2, 2], [3, 3]]


def golden(name):
    return torch.load(os.path.join(FIXTURES, 'golden', name), weights_only=True)


def deit(img_size=64, class_token=True):
    """A small timm ViT/DeiT (global pool = token with class token, else avg)."""
    return VisionTransformer(img_size=img_size, patch_size=16, embed_dim=64, depth=4,
                             num_heads=4, num_classes=10, class_token=class_token,
                             global_pool='token' if class_token else 'avg', fc_norm=False)


def small_adapter(scheme='LearnedPE', **kw):
    return ViTAdapter(embed_dim=64, depth=4, num_heads=4, deform_num_heads=4, conv_inplane=8,
                      interaction_indexes=FOUR, pretrain_size=64,
                      pos_embed=dict(type=scheme), **kw)


@pytest.mark.parametrize('fmt', ['model_key', 'raw', 'state_dict_module', 'safetensors'])
def test_deit_checkpoints_in_every_format_load_through_init_cfg(tmp_path, fmt):
    src = deit(img_size=96)  # 6x6 pretraining grid + class slot
    sd = src.state_dict()
    path = str(tmp_path / ('w.safetensors' if fmt == 'safetensors' else 'w.pth'))
    if fmt == 'safetensors':
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save({'model_key': {'model': sd}, 'raw': sd,
                    'state_dict_module': {'state_dict': {'module.' + k: v for k, v in sd.items()}}
                    }[fmt], path)
    model = small_adapter(init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    torch.testing.assert_close(model.blocks[2].attn.qkv.weight, sd['blocks.2.attn.qkv.weight'])
    # 36 patch positions (class slot dropped by length) resized to the 4x4 grid, bicubic
    # without antialias (LearnedPE's default, as ViT-Adapter resizes)
    grid = sd['pos_embed'][:, 1:].reshape(1, 6, 6, 64).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(4, 4), mode='bicubic', align_corners=False)
    torch.testing.assert_close(model.pe.table.weight,
                               resized.permute(0, 2, 3, 1).reshape(1, 16, 64))


def test_load_report_explains_every_tensor():
    sd = deit().state_dict()
    _, report = remap(sd, small_adapter())
    assert report.ok
    assert report.dropped['cls_token'] == 'this model has no class token'
    assert 'head.weight' in report.dropped and 'norm.weight' in report.dropped
    assert report.resized == {'pe.table.weight': '(1, 17, 64) -> (1, 16, 64)'}
    assert any(k.startswith('spm.') for k in report.new)
    # layer scale: not in DeiT, starts at its init; the rule says so
    assert report.new['blocks.0.ls1.gamma'].startswith('the checkpoint has no layer scales')
    table = report.table()
    counts = {row.split('|')[0].strip(): int(row.split('|')[1]) for row in table.splitlines()}
    assert counts == {'loaded': len(report.loaded), 'resized': 1,
                      'newly initialised': len(report.new), 'dropped': len(report.dropped),
                      'unexpected': 0, 'missing': 0, 'non-finite': 0}
    assert counts['loaded'] > 0 and counts['newly initialised'] > 0
    assert 'pe.table.weight ((1, 17, 64) -> (1, 16, 64))' in table
    assert 'cls_token (this model has no class token)' in table
    assert ('blocks.0.ls1.gamma, blocks.0.ls2.gamma, blocks.1.ls1.gamma, ... (+5): the '
            'checkpoint has no layer scales (its family has none); starts at '
            'layer_scale_init_value') in table


def test_strict_mode_names_unexplained_keys():
    sd = deit().state_dict()
    sd['blocks.0.attn.mystery'] = torch.zeros(3)
    del sd['blocks.1.mlp.fc1.weight']
    with pytest.raises(IncompatibleCheckpointError) as err:
        load_pretrained(small_adapter(), sd, strict=True)
    assert 'blocks.0.attn.mystery' in str(err.value) and 'blocks.1.mlp.fc1.weight' in str(err.value)
    report = load_pretrained(small_adapter(), sd, strict=False)
    assert report.unexpected == ['blocks.0.attn.mystery']
    assert report.missing == {'blocks.1.mlp.fc1.weight': 'the checkpoint lacks it'}


def test_original_vit_adapter_whole_detector_through_load_from(tmp_path):
    """mmdet 2.x layout (backbone.*, neck.*, ...) through mmengine's load_checkpoint."""
    from mmengine.runner import load_checkpoint
    g = golden('vit_adapter_det.pt')
    cfg = g['config']
    backbone = ViTAdapter(
        embed_dim=32, depth=4, num_heads=2, pretrain_size=64, conv_inplane=8, n_points=2,
        deform_num_heads=2, deform_ratio=cfg['deform_ratio'], interaction_indexes=FOUR,
        drop_path_rate=0., window_size=cfg['window_size'])

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.neck = torch.nn.Conv2d(32, 8, 1)

    detector = Detector().eval()
    neck = {'neck.weight': torch.randn(8, 32, 1, 1), 'neck.bias': torch.randn(8)}
    path = tmp_path / 'mask_rcnn_deit_adapter.pth'
    torch.save({'state_dict': {**{'backbone.' + k: v for k, v in g['state_dict'].items()},
                               **neck}, 'meta': {'epoch': 36}}, path)
    load_checkpoint(detector, str(path), strict=True)
    torch.testing.assert_close(detector.neck.weight, neck['neck.weight'])
    with torch.no_grad():
        for ours, ref in zip(detector.backbone(g['img']), g['outs']):
            assert (ours - ref).abs().max() < 1e-4


def test_lape_checkpoint_reproduces_the_official_block():
    g = golden('lape_block.pt')
    state = {f'blocks.0.{k}': v for k, v in g['state_dict'].items()}
    state['pos_embed'] = g['pos']
    model = PEViT(embed_dim=32, depth=1, num_heads=4, patch_size=16, pretrain_size=64,
                  class_token=True, norm_eps=g['ln_eps'], pos_embed=dict(type='LaPE')).eval()
    state.update({k: v for k, v in model.state_dict().items() if k.startswith(('patch', 'norm',
                                                                               'cls'))})
    report = load_pretrained(model, state)
    assert 'pe.norms.0.weight' in report.loaded
    with torch.no_grad():
        pe_state = model.pe.prepare((4, 4), torch.device('cpu'), torch.float32)
        torch.testing.assert_close(model.forward_blocks(g['x'], pe_state), g['out_x'],
                                   atol=1e-5, rtol=1e-4)


def test_sp_vit_checkpoint_reproduces_the_official_attention():
    g = golden('spvit_sp_sa.pt')
    state = {f'blocks.0.attn.{k}': v for k, v in g['state_dict'].items()}
    model = PEViT(embed_dim=32, depth=1, num_heads=4, pretrain_size=80, qkv_bias=False,
                  pos_embed=dict(type='SPSA')).eval()
    state.update({k: v for k, v in model.state_dict().items()
                  if 'attn' not in k and not k.startswith('pe.')})
    report = load_pretrained(model, state)
    assert report.ok and 'blocks.0.attn.qkv.weight' in report.loaded
    with torch.no_grad():
        pe_state = model.pe.prepare((5, 5), torch.device('cpu'), torch.float32)
        out = model.blocks[0].attn(g['x'], 0, model.pe, pe_state)
    torch.testing.assert_close(out, g['out'], atol=1e-5, rtol=1e-4)


def test_cpvt_rope_vit_mae_and_beit_layouts():
    # CPVT / Twins PEG
    peg = PEViT(embed_dim=32, depth=2, num_heads=4, pos_embed=dict(type='PEG'))
    conv = {'pos_block.0.proj.0.weight': torch.randn(32, 1, 3, 3),
            'pos_block.0.proj.0.bias': torch.randn(32)}
    mapped, _ = remap(conv, peg)
    assert set(mapped) == {'pe.convs.0.proj.0.weight', 'pe.convs.0.proj.0.bias'}
    for name in ('weight', 'bias'):
        torch.testing.assert_close(mapped[f'pe.convs.0.proj.0.{name}'],
                                   conv[f'pos_block.0.proj.0.{name}'])
    # rope-vit mixed frequencies (2, depth, heads * d/2)
    rope = PEViT(embed_dim=32, depth=1, num_heads=2, pos_embed=dict(type='RoPEMixed'))
    freqs = golden('ropevit.pt')['mixed_freqs']  # (2, heads, d/2) for one block
    mapped, _ = remap({'freqs': freqs.reshape(2, 1, -1)}, rope)
    torch.testing.assert_close(mapped['pe.freqs'][:, 0], freqs)
    # MAE: fixed sin-cos is regenerated, the stored table is dropped with a reason
    mae = PEViT(embed_dim=32, depth=1, num_heads=4, pos_embed=dict(type='SinCosPE'))
    _, report = remap({'pos_embed': golden('mae_sincos.pt')['pos'][None]}, mae)
    assert 'SinCosPE does not use' in report.dropped['pos_embed']
    # BEiT: shared table (+3 class entries) for a 14x14 grid -> every block, resized
    beit = PEViT(embed_dim=32, depth=2, num_heads=4, pretrain_size=112,
                 pos_embed=dict(type='RelPosBias'))
    shared = torch.randn(27 * 27 + 3, 4)
    mapped, report = remap({'rel_pos_bias.relative_position_bias_table': shared,
                            'blocks.0.attn.relative_position_index': torch.zeros(1)}, beit)
    assert mapped['pe.tables.0'].shape == mapped['pe.tables.1'].shape == (13 * 13, 4)  # 7x7 grid
    assert 'blocks.0.attn.relative_position_index' in report.dropped


@pytest.mark.parametrize('target', ['LaPE', 'RoPEAxial', 'RelPosBias', 'SPSA'])
def test_scheme_conversion_from_learned_pe(target):
    """DeiT (learned PE) -> another scheme: shared tensors load, the rest is explained."""
    sd = deit(class_token=False).state_dict()
    model = small_adapter(target)
    report = load_pretrained(model, sd, strict=True)
    own = [k for k in model.state_dict() if k.startswith('pe.')]
    if target == 'LaPE':
        assert 'pe.table.weight' in report.loaded
        assert all(k in report.new for k in own if k.startswith('pe.norms'))
    else:
        assert 'pos_embed' in report.dropped
        assert all(k in report.new for k in own)


def test_a_new_scheme_brings_its_foreign_layout_in_its_own_class():
    """A scheme with foreign keys is its class plus its registry entry: the generic
    walk routes its keys to it, and other schemes drop them naming its layout."""
    import re

    from torch import nn

    from mmvitpe.models.pos_encodings import PositionalEncoding
    from mmvitpe.registry import POS_ENCODINGS

    class ScaledInputPE(PositionalEncoding):
        foreign_keys = re.compile(r'^other_codebase\.pe_scale$')

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = nn.Parameter(torch.ones(self.embed_dim))

        def convert_foreign(self, key, value):
            return {'scale': value.flatten()}

    POS_ENCODINGS.register_module(module=ScaledInputPE)
    try:
        sd = {**deit(class_token=False).state_dict(), 'other_codebase.pe_scale': torch.rand(1, 64)}
        model = small_adapter('ScaledInputPE')
        report = load_pretrained(model, sd, strict=True)
        torch.testing.assert_close(model.pe.scale, sd['other_codebase.pe_scale'][0])
        assert report.resized == {'pe.scale': '(1, 64) -> (64,)'}  # flattened by its owner
        report = load_pretrained(small_adapter('LearnedPE'), sd, strict=True)
        assert report.dropped['other_codebase.pe_scale'] == (
            'PE tensor that LearnedPE does not use (layout of ScaledInputPE)')
    finally:
        POS_ENCODINGS.module_dict.pop('ScaledInputPE')


def test_a_tensor_two_keys_load_into_is_an_error():
    sd = deit(class_token=False).state_dict()
    sd['pe.table.weight'] = torch.zeros(1, 16, 64)
    with pytest.raises(IncompatibleCheckpointError, match='pos_embed and pe.table.weight both '
                       'load into pe.table.weight|pe.table.weight and pos_embed both load'):
        remap(sd, small_adapter())


def test_neutral_schemes_start_from_deit_unchanged():
    """RelPosBias/SPSA initialise neutral: DeiT -> scheme == DeiT -> NoPE."""
    sd = deit(class_token=False).state_dict()
    outputs = []
    for scheme in ('NoPE', 'RelPosBias', 'SPSA'):
        model = small_adapter(scheme).eval()
        torch.manual_seed(0)
        load_pretrained(model, sd)
        x, state = model.embed(torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(1)))
        with torch.no_grad():
            outputs.append(model.forward_blocks(x, state))
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(outputs[2], outputs[0])


def test_timm_pretrained_scheme_round_trips_into_vit_adapter(tmp_path):
    """timm model with MPVG -> timm-format checkpoint -> ViT-Adapter with MPVG: same ViT features."""
    import argparse
    import timm
    model = timm.create_model('deit_tiny_mpvg_patch16_224', num_classes=10).eval()
    for p in model.pe.parameters():  # trained-looking PE parameters, not the init
        p.data.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / 'model_best.pth.tar'  # as timm's CheckpointSaver writes it
    torch.save({'epoch': 299, 'arch': 'deit_tiny_mpvg_patch16_224', 'version': 2,
                'state_dict': model.state_dict(), 'args': argparse.Namespace(lr=5e-4)}, path)
    adapter = ViTAdapter(preset='tiny', pos_embed=dict(type='MPVG'), final_norm=True,
                         init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    adapter.init_weights()
    adapter.eval()
    img = torch.randn(1, 3, 224, 160)
    with torch.no_grad():
        ref = model.forward_features(img)
        x, state = adapter.embed(img)
        ours = adapter.finalize(adapter.forward_blocks(x, state), state)
    torch.testing.assert_close(ours, ref)


def convert_cli(src, config, out):
    """tools/convert_weights.py SRC CONFIG OUT for a tiny ViT-Adapter (the small_adapter())."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tiny = ['model.backbone.embed_dim=64', 'model.backbone.num_heads=4', 'model.backbone.depth=4',
            'model.backbone.deform_num_heads=4', 'model.backbone.conv_inplane=8',
            'model.backbone.interaction_indexes=[[0,0],[1,1],[2,2],[3,3]]',
            'model.backbone.pretrain_size=64']
    return subprocess.run([sys.executable, 'tools/convert_weights.py', str(src), config, str(out),
                           '--cfg-options', *tiny], cwd=repo, capture_output=True, text=True)


def test_convert_weights_cli_writes_a_checkpoint_the_configs_load(tmp_path):
    src = tmp_path / 'deit.pth'
    sd = deit(class_token=True).state_dict()
    torch.save({'model': sd}, src)
    out = tmp_path / 'converted.pth'
    config = 'configs/demo/upernet_vit-adapter-t-mpvg_demo.py'
    done = convert_cli(src, config, out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'newly initialised' in done.stdout and 'wrote' in done.stdout
    model = small_adapter('MPVG', final_norm=True,
                          init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    model.init_weights()
    torch.testing.assert_close(model.blocks[3].mlp.fc2.weight, sd['blocks.3.mlp.fc2.weight'])
    sd['blocks.0.attn.extra'] = torch.zeros(1)
    torch.save(sd, src)
    failed = convert_cli(src, config, out)
    assert failed.returncode != 0 and 'blocks.0.attn.extra' in failed.stderr


def test_dinov3_periods_and_eva02_tables_are_their_schemes_layouts():
    # DINOv3: the persistent periods buffer, stored in bfloat16 by the released models
    dinov3 = PEViT(embed_dim=64, depth=1, num_heads=4, pos_embed=dict(type='RoPEDINOv3'))
    periods = (torch.rand(4) * 50 + 1).bfloat16()
    load_pretrained(dinov3, {'rope_embed.periods': periods}, strict=False)
    assert dinov3.pe.periods.dtype == torch.float32  # a float tensor, copied into the buffer
    torch.testing.assert_close(dinov3.pe.periods, periods.float())
    _, report = remap({'rope_embed.periods': periods}, PEViT(embed_dim=64, depth=1, num_heads=4))
    assert report.dropped['rope_embed.periods'] == (
        'PE tensor that LearnedPE does not use (layout of RoPEDINOv3)')
    # EVA-02: cos/sin tables of its fine-tuning grid, here a 6x6 grid over a 4x4 pretraining
    # grid; recomputed, so they are checked against the scheme's arguments and dropped
    g = golden('eva02_rope.pt')
    tables = {'rope.freqs_cos': g['freqs_cos_6'], 'blocks.0.attn.rope.freqs_sin': g['freqs_sin_6']}
    eva = PEViT(embed_dim=32, depth=1, num_heads=2, patch_size=4, pretrain_size=16,
                pos_embed=dict(type='RoPEEVA02'))
    mapped, report = remap(tables, eva)
    assert not mapped and set(report.dropped) == set(tables)
    wrong = PEViT(embed_dim=32, depth=1, num_heads=2, patch_size=4, pretrain_size=20,
                  pos_embed=dict(type='RoPEEVA02'))
    with pytest.raises(ValueError, match=r'rope.freqs_cos: .* ref_grid=\(5, 5\)'):
        remap(tables, wrong)


@pytest.mark.parametrize('scheme', ['rope-dinov3', 'rope-eva02'])
def test_convert_weights_cli_carries_a_rope_schemes_own_tensors(tmp_path, scheme):
    sd = deit(class_token=False).state_dict()
    if scheme == 'rope-dinov3':
        sd['rope_embed.periods'] = torch.tensor([1.0, 3.0, 9.0, 27.0]).bfloat16()
    else:  # EVA-02's tables for its 4x4 grid (64 px / patch 16), one per block as released
        from timm.layers.pos_embed_sincos import RotaryEmbeddingCat
        sd.pop('pos_embed')
        table = RotaryEmbeddingCat(16, in_pixels=False, ref_feat_shape=(4, 4)).get_embed((4, 4))
        for i in range(4):
            sd[f'blocks.{i}.attn.rope.freqs_sin'], sd[f'blocks.{i}.attn.rope.freqs_cos'] = \
                table.chunk(2, -1)
    src, out = tmp_path / 'src.pth', tmp_path / 'converted.pth'
    torch.save({'model': sd}, src)
    config = f'configs/vit_adapter_pe/upernet_vit-adapter-t-{scheme}_512x512_160k_ade20k.py'
    done = convert_cli(src, config, out)
    assert done.returncode == 0, done.stderr[-2000:]
    converted = torch.load(out, weights_only=True)
    converted = converted.get('state_dict', converted)
    periods = [v for k, v in converted.items() if k.endswith('pe.periods')]
    if scheme == 'rope-dinov3':
        assert len(periods) == 1 and periods[0].tolist() == [1.0, 3.0, 9.0, 27.0]
    else:
        assert not any('freqs_' in k for k in converted)
        assert 'freqs_cos' in done.stdout  # reported as dropped


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


# ---- what a tensor that reaches the model's parts must be ----------------------------------
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
    model = tiny_vit_with_pe('RoPEMixed')
    report = load_pretrained(model, rope_vit_state(model), strict=True)
    assert report.dropped == {'freqs_t_x': 'buffer that RoPEMixed recomputes for every grid',
                              'freqs_t_y': 'buffer that RoPEMixed recomputes for every grid'}
    _, report = remap(rope_vit_state(model), tiny_vit_with_pe('RoPEAxial'))
    assert 'layout of RoPEMixed' in report.dropped['freqs_t_x']


def bad_tensor(name, dtype=None):
    """A source state dict for a LearnedPE PEViT (4x4 grid, D=32) with one bad entry."""
    model = tiny_vit_with_pe('LearnedPE')
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
    # a scheme's own tensor is never filtered out as "unused" nor cast: remap checks it
    ('RoPEDINOv3', {'rope_embed.periods': torch.arange(1., 4.)},
     r'rope_embed.periods -> pe.periods: shape \(3,\) does not fit \(2,\)'),
    ('RoPEDINOv3', {'rope_embed.periods': torch.ones(1, 2)},
     r'rope_embed.periods -> pe.periods: shape \(1, 2\) does not fit \(2,\)'),
    ('RoPEDINOv3', {'rope_embed.periods': torch.tensor([2, 7])},
     r'rope_embed.periods -> pe.periods: a torch.int64 tensor where the model has '
     r'torch.float32; integer values are not cast to floating-point'),
    ('RoPEEVA02', {'rope.freqs_cos': torch.ones(16, 4)},
     r'rope.freqs_cos: a RoPE table of shape \(16, 4\) does not fit RoPEEVA02 \(tokens of a '
     r'square grid, head_dim 8\)'),
    ('SPSA', {'blocks.0.attn.w2': torch.randn(4 * 8 + 1, 1)},
     r'blocks.0.attn.w2 -> pe.priors.0.w2: shape \(33, 1\) does not fit \(4, 8\)'),
])
def test_positional_tensor_of_the_models_scheme_with_another_shape_fails(name, source, message):
    model = tiny_vit_with_pe(name)
    if name == 'RoPEMixed':
        state = rope_vit_state(model, depth=3)
    elif name in ('RoPEDINOv3', 'SPSA', 'RoPEEVA02'):
        state = {k: v for k, v in model.state_dict().items() if not k.startswith('pe.')}
        state.update(source)
        source = ', '.join(source)
    else:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith('pe.')}
        state['rel_pos_bias.relative_position_bias_table'] = torch.randn(49 + 3, 6)
    with pytest.raises(IncompatibleCheckpointError, match=message):
        load_pretrained(model, state, strict=True)


def dinov2_state(depth=2):
    """A timm DINOv2-S state dict (random values, the released layout) and the arch."""
    from timm.models.vision_transformer import vit_small_patch14_dinov2
    timm_model = vit_small_patch14_dinov2(pretrained=False, depth=depth, img_size=98)
    return timm_model.state_dict(), dict(arch='dinov2_small', depth=depth, pretrain_size=98)


@pytest.mark.parametrize('dropped,missing', [
    (r'^blocks\.\d+\.norm1\.', ['blocks.0.norm1.weight', 'blocks.0.norm1.bias',
                                  'blocks.1.norm1.weight', 'blocks.1.norm1.bias']),
    (r'^cls_token$', ['cls_token']),
    (r'^norm\.', ['norm.weight', 'norm.bias']),
    (r'^patch_embed\.proj\.bias$', ['patch_embed.proj.bias']),
    (r'^blocks\.1\.ls1\.', ['blocks.1.ls1.gamma']),
    (r'^blocks\.0\.attn\.qkv\.bias$', ['blocks.0.attn.qkv.bias']),
], ids=['block norms', 'class token', 'final norm', 'patch bias', 'one layer scale',
        'one qkv bias'])
def test_strict_requires_every_parameter_of_the_checkpoints_family(dropped, missing):
    import re
    state, arch = dinov2_state()
    state = {k: v for k, v in state.items() if not re.match(dropped, k)}
    with pytest.raises(IncompatibleCheckpointError) as error:
        load_pretrained(PEViT(**arch), state, strict=True)
    assert all(key in str(error.value) for key in missing), str(error.value)
    report = load_pretrained(PEViT(**arch), state, strict=False)
    assert list(report.missing) == missing and not report.new
    if 'ls1' in dropped or 'qkv' in dropped:  # the family has them: another block holds one
        assert report.missing[missing[0]].startswith('the checkpoint holds blocks.*.')


def test_what_starts_new_is_a_stated_rule_per_parameter():
    state, arch = dinov2_state()
    assert load_pretrained(PEViT(**arch), state, strict=True).ok
    # a family without qkv biases or layer scales (DeiT-like): they start new, said why
    state = {k: v for k, v in state.items() if not re.search(r'attn\.qkv\.bias|\.ls[12]\.', k)}
    report = load_pretrained(PEViT(**arch), state, strict=True)
    assert report.new['blocks.1.attn.qkv.bias'] == (
        'the checkpoint has no qkv bias (its family has none); starts at zero, the same as none')
    assert report.new['blocks.0.ls2.gamma'].startswith('the checkpoint has no layer scales')
    assert len(report.new) == 2 * 3 and not report.missing
    # the dense backbone's own parts are new by their owner's rule
    report = load_pretrained(small_adapter(), deit().state_dict(), strict=True)
    assert report.new['level_embed'] == ('a part of ViTAdapter outside the ViT, which ViT '
                                         'checkpoints do not hold; starts at its initialisation')
    assert report.new['spm.fc1.weight'].startswith('a SpatialPriorModule parameter')


def test_non_finite_weights_are_refused_in_strict_mode_and_reported_otherwise():
    state, arch = dinov2_state()
    state['blocks.0.attn.qkv.weight'] = state['blocks.0.attn.qkv.weight'].clone()
    state['blocks.0.attn.qkv.weight'][3, 1] = float('nan')
    state['pos_embed'] = state['pos_embed'].clone()
    state['pos_embed'][0, 5, 0] = float('inf')
    with pytest.raises(IncompatibleCheckpointError,
                       match=r'non-finite \(NaN or inf values\): pos_embed, '
                             r'blocks.0.attn.qkv.weight'):
        load_pretrained(PEViT(**arch), state, strict=True)
    report = load_pretrained(PEViT(**arch), state, strict=False)
    assert report.non_finite == ['pos_embed', 'blocks.0.attn.qkv.weight']
    assert 'non-finite        |     2 | pos_embed, blocks.0.attn.qkv.weight' in report.table()


def converter_case(case):
    """A tiny ViT's state dict (as a foreign source) with one malformed tensor."""
    model = tiny_vit()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state['pos_embed'] = state.pop('pe.table.weight')
    qkv = state.pop('blocks.0.attn.qkv.weight')
    if case == 'non-square kernel':
        state['patch_embed.proj.weight'] = torch.randn(32, 3, 16, 14)
    elif case == 'empty kernel':
        state['patch_embed.proj.weight'] = torch.randn(32, 3, 0, 0)
    elif case == 'empty pos_embed':
        state['pos_embed'] = torch.randn(1, 0, 32)
    elif case == 'bias mask':
        state['blocks.0.attn.qkv.bias_mask'] = torch.ones(95)
    elif case == 'k_proj':
        state.update({'blocks.0.attn.q_proj.weight': qkv[:32], 'blocks.0.attn.k_proj.weight':
                      qkv[32:60], 'blocks.0.attn.v_proj.weight': qkv[64:]})
    elif case == 'q_bias':
        state.pop('blocks.0.attn.qkv.bias')
        state.update({'blocks.0.attn.qkv.weight': qkv, 'blocks.0.attn.q_bias': torch.zeros(32),
                      'blocks.0.attn.v_bias': torch.zeros(31)})
    elif case == 'qk and v':
        state.update({'blocks.0.attn.qk.weight': qkv[:64], 'blocks.0.attn.v.weight': qkv[:16]})
    return model, state


@pytest.mark.parametrize('case,message', [
    ('non-square kernel', r'patch_embed.proj.weight: a kernel of shape \(32, 3, 16, 14\) is not '
                          r'one of non-empty square patches; this ViT\'s is \(32, 3, 16, 16\)'),
    ('empty kernel', r'patch_embed.proj.weight: a kernel of shape \(32, 3, 0, 0\) is not one'),
    ('empty pos_embed', r'pos_embed: cannot fit a position table of shape \(1, 0, 32\) to '
                        r'\(1, 16, 32\)'),
    ('bias mask', r'blocks.0.attn.qkv.bias \(96,\), blocks.0.attn.qkv.bias_mask \(95,\): a bias '
                  r'mask has the shape of its bias'),
    ('k_proj', r'blocks.0.attn.q_proj.weight \(32, 32\), blocks.0.attn.k_proj.weight \(28, 32\), '
               r'blocks.0.attn.v_proj.weight \(32, 32\): q, k and v projections have one shape'),
    ('q_bias', r'blocks.0.attn.q_bias \(32,\), blocks.0.attn.v_bias \(31,\): q and v biases '
               r'have one shape'),
    ('qk and v', r'blocks.0.attn.qk.weight \(64, 32\), blocks.0.attn.v.weight \(16, 32\): qk '
                 r'holds twice the rows of v'),
])
def test_converters_name_the_keys_and_shapes_that_do_not_fit(case, message):
    model, state = converter_case(case)
    with pytest.raises(IncompatibleCheckpointError, match=message):
        load_pretrained(model, state, strict=False)


def test_a_table_row_no_checkpoint_value_fills_is_missing_not_just_resized():
    # a table without a class slot (timm's DINOv2-reg4 layout) into one with a slot
    model = tiny_vit(class_token=True, pos_embed=dict(type='LearnedPE', class_slot=True))
    state = {k: v for k, v in model.state_dict().items() if k != 'pe.table.weight'}
    state['pos_embed'] = torch.randn(1, 8 * 8, 32)
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"pe.table.weight \(its class slot \(row 0\): the checkpoint's "
                             r"table \(1, 64, 32\) has none \(from pos_embed\)\)"):
        load_pretrained(model, state, strict=True)
    report = load_pretrained(model, state, strict=False)
    assert report.resized == {'pe.table.weight': '(1, 64, 32) -> (1, 17, 32)'}
    assert list(report.missing) == ['pe.table.weight']


def test_our_own_layout_with_a_tensor_of_another_shape_is_an_error_in_lenient_loads():
    from mmengine.runner.checkpoint import load_state_dict
    model = small_adapter()
    state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    state['backbone.blocks.1.mlp.fc1.weight'] = torch.randn(256, 32)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = small_adapter()
    with pytest.raises(IncompatibleCheckpointError,
                       match=r'blocks.1.mlp.fc1.weight -> blocks.1.mlp.fc1.weight: shape '
                             r'\(256, 32\) does not fit \(256, 64\)'):
        load_state_dict(Detector(), state, strict=False)  # as mmengine's load_from does


def test_a_new_checkpoint_family_is_its_converter_and_a_registry_entry():
    from mmvitpe.weights.families import FAMILIES, Family, register_family
    from mmvitpe.weights.families.base import rename

    class Trunk(Family):  # a layout whose blocks sit under 'trunk.layers.<i>.'
        name, sources = 'trunk', 'a made-up trunk.layers layout'

        def recognises(self, state):
            return any(k.startswith('trunk.layers.') for k in state)

        def convert(self, state, targets):
            return rename(state, [(r'^trunk\.layers\.', 'blocks.')]), {}

    model = tiny_vit()
    state = {k.replace('blocks.', 'trunk.layers.'): v for k, v in model.state_dict().items()}
    with pytest.raises(IncompatibleCheckpointError, match='unexpected'):
        load_pretrained(tiny_vit(), state)
    register_family(Trunk)
    try:
        target = tiny_vit()
        report = load_pretrained(target, state)
        assert report.families == ['trunk'] and report.ok
        assert 'trunk.layers.0.norm1.weight' not in report.unexpected
        assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(),
                                                     model.state_dict().values()))
    finally:
        FAMILIES.pop('trunk')
