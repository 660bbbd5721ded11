"""Foundation ViT presets (DINOv2, DINOv3, EVA-02) against timm 1.0.31 on identical weights."""
import os
import re
import subprocess
import sys

import pytest
import timm
import torch

from helpers import perturbed
from mmvitpe.models import PEViT, ViTAdapter
from mmvitpe.weights import IncompatibleCheckpointError, load_pretrained, remap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def report_counts(text: str) -> dict:
    return {m.group(1).strip(): int(m.group(2))
            for m in re.finditer(r'^(\w[\w ]*?)\s*\|\s*(\d+) \|', text, re.M)}


def assert_patch_tokens_equal(ours: PEViT, ref, size, atol=1e-4) -> None:
    img = torch.randn(1, 3, *size)
    with torch.no_grad():
        mine = ours.forward_features(img)[0][:, ours.num_prefix_tokens:]
        theirs = ref.forward_features(img)[:, ref.num_prefix_tokens:]
    torch.testing.assert_close(mine, theirs, rtol=0, atol=atol)


# rope-vit with APE has no arch of its own: DeiT-S with the RoPEMixedAPE preset
ROPE_MIXED_APE = dict(arch='small', class_token=True, layer_scale_init_value=1e-5,
                      pos_embed=dict(type='RoPEMixedAPE'))
# (arch, timm model, other grid's image size: non-square, not the pretraining one)
FAMILIES = [
    ('dinov2_small', 'vit_small_patch14_dinov2', (224, 308)),
    ('dinov2_small_reg4', 'vit_small_patch14_reg4_dinov2', (224, 308)),
    ('dinov3_small', 'vit_small_patch16_dinov3', (224, 304)),
    ('eva02_tiny', 'eva02_tiny_patch14_224', (196, 266)),
    (ROPE_MIXED_APE, 'vit_small_patch16_rope_mixed_ape_224', (160, 272)),
]


@pytest.mark.parametrize('arch,name,other', FAMILIES, ids=lambda v: v if isinstance(v, str)
                         else None)
def test_timm_weights_through_the_converter_equal_timm(tmp_path, arch, name, other):
    ref = perturbed(timm.create_model(name, pretrained=False, depth=2, num_classes=0,
                                      dynamic_img_size=True)).eval()
    src, out, config = tmp_path / 'timm.pth', tmp_path / 'converted.pth', tmp_path / 'cfg.py'
    torch.save(ref.state_dict(), src)
    backbone = arch if isinstance(arch, dict) else dict(arch=arch)
    config.write_text(f"model = dict(backbone=dict(type='mmvitpe.PEViT', **{backbone!r}))\n")
    done = subprocess.run([sys.executable, 'tools/convert_weights.py', str(src), str(config),
                           str(out), '--cfg-options', 'model.backbone.depth=2'],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = report_counts(done.stdout)
    # timm recomputes DINOv3's periods (not in its state dict); EVA-02's fc_norm is the
    # classifier's (after pooling), not the tokens'
    family = backbone['arch']
    assert counts['newly initialised'] == (1 if family.startswith('dinov3') else 0), done.stdout
    assert counts['dropped'] == (2 if family.startswith('eva02') else 0), done.stdout
    ours = PEViT(**backbone, depth=2, init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    ours.init_weights()
    ours.eval()
    pretrain = tuple(g * ours.patch_size for g in ours.pretrain_grid)
    for size in (pretrain, other):
        assert_patch_tokens_equal(ours, ref, size)


# the other MLPs at reduced width: DINOv2-g's packed SwiGLU, DINOv3-S+'s aligned split
# SwiGLU, EVA-02-B's sub-LN SwiGLU with separate q/k/v projections
# (width 96 for DINOv2-g: timm's packed width 96 * 2.66667 * 2 must be even)
@pytest.mark.parametrize('arch,name,size,dim', [
    ('dinov2_giant_reg4', 'vit_giant_patch14_reg4_dinov2', 112, 96),
    ('dinov3_small_plus', 'vit_small_plus_patch16_dinov3', 64, 64),
    ('eva02_base', 'eva02_base_patch14_224', 112, 64),
])
def test_mlp_variants_equal_timm(arch, name, size, dim):
    ref_extra = dict(ref_feat_shape=(8, 8)) if arch.startswith('eva02') else {}
    ref = perturbed(timm.create_model(name, pretrained=False, depth=2, embed_dim=dim,
                                      num_heads=2, img_size=size, num_classes=0,
                                      dynamic_img_size=True, **ref_extra)).eval()
    ours = PEViT(arch=arch, depth=2, embed_dim=dim, num_heads=2, pretrain_size=size).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert not report.resized and len(report.new) == (1 if arch.startswith('dinov3') else 0)
    mlp_keys = {k.split('mlp.')[1] for k in ref.state_dict() if 'blocks.0.mlp.' in k}
    assert mlp_keys == {k.split('mlp.')[1] for k in ours.state_dict() if 'blocks.0.mlp.' in k}
    for other in ((size, size), (size - 2 * ours.patch_size, size + 3 * ours.patch_size)):
        assert_patch_tokens_equal(ours, ref, other)


def test_official_dinov2_reg4_layout_equals_timm():
    """dinov2_vitg14_reg4_pretrain.pth's keys: chunked blocks, SwiGLU w12/w3,
    register_tokens, mask_token, and a class slot in pos_embed that timm folds."""
    ref = perturbed(timm.create_model('vit_giant_patch14_reg4_dinov2', pretrained=False,
                                      depth=2, embed_dim=96, num_heads=2, img_size=112,
                                      num_classes=0, dynamic_img_size=True)).eval()
    timm_state = ref.state_dict()
    slot = torch.randn(1, 1, 96)
    official = {'cls_token': timm_state['cls_token'] - slot,
                'pos_embed': torch.cat([slot, timm_state['pos_embed']], dim=1),
                'register_tokens': timm_state['reg_token'], 'mask_token': torch.zeros(1, 96)}
    for key, value in timm_state.items():
        if key.startswith('blocks.'):  # block_chunks=1: blocks.<chunk>.<global index>.
            key = re.sub(r'^blocks\.(\d+)\.', r'blocks.0.\1.', key)
            key = key.replace('mlp.fc1.', 'mlp.w12.').replace('mlp.fc2.', 'mlp.w3.')
            official[key] = value
        elif key not in ('cls_token', 'pos_embed', 'reg_token'):
            official[key] = value
    ours = PEViT(arch='dinov2_giant_reg4', depth=2, embed_dim=96, num_heads=2,
                 pretrain_size=112).eval()
    report = load_pretrained(ours, official)
    assert list(report.dropped) == ['mask_token']
    assert not report.new and not report.resized
    for size in ((112, 112), (84, 154)):
        assert_patch_tokens_equal(ours, ref, size)


def test_official_dinov3_layout_equals_timm():
    """The official DINOv3 keys (as timm's checkpoint filter reads them): storage_tokens,
    ls1/ls2.gamma, SwiGLU w1/w2/w3, a zero qkv bias with its k mask, rope periods,
    mask_token and the 7B's local_cls_norm."""
    ref = perturbed(timm.create_model('vit_small_plus_patch16_dinov3', pretrained=False,
                                      depth=2, embed_dim=64, num_heads=2, img_size=64,
                                      num_classes=0)).eval()
    ours = PEViT(arch='dinov3_small_plus', depth=2, embed_dim=64, num_heads=2,
                 pretrain_size=64).eval()
    renames = [('reg_token', 'storage_tokens'), ('gamma_1', 'ls1.gamma'),
               ('gamma_2', 'ls2.gamma'), ('mlp.fc1_g.', 'mlp.w1.'), ('mlp.fc1_x.', 'mlp.w2.'),
               ('mlp.fc2.', 'mlp.w3.')]
    official = {'mask_token': torch.zeros(1, 64), 'local_cls_norm.weight': torch.ones(64),
                # fp32 here: timm recomputes the periods, ours loads them (the released
                # bf16 ones give angles within bf16 rounding of timm's)
                'rope_embed.periods': ours.pe.periods.clone()}
    for key, value in ref.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        official[key] = value
        if key.endswith('attn.qkv.weight'):
            official[key.replace('weight', 'bias')] = torch.zeros(3 * 64)
            official[key.replace('weight', 'bias_mask')] = torch.ones(3 * 64)
    report = load_pretrained(ours, official)
    assert set(report.dropped) == {'mask_token', 'local_cls_norm.weight',
                                   'blocks.0.attn.qkv.bias', 'blocks.1.attn.qkv.bias',
                                   'blocks.0.attn.qkv.bias_mask', 'blocks.1.attn.qkv.bias_mask'}
    assert not report.new and not report.resized
    for size in ((64, 64), (48, 112)):
        assert_patch_tokens_equal(ours, ref, size)
    official['blocks.0.attn.qkv.bias'] = torch.ones(3 * 64)  # a real bias needs qkv_bias=True
    with pytest.raises(IncompatibleCheckpointError, match='unexpected .*blocks.0.attn.qkv.bias'):
        load_pretrained(ours, official)


def test_presets_are_overridable_and_dense_backbones_take_patch_tokens_only():
    vit = PEViT(arch='dinov2_small', depth=1, pos_embed=dict(type='RoPEAxial'),
                layer_scale_init_value=0.1)
    assert (vit.patch_size, vit.pretrain_grid, vit.num_prefix_tokens) == (14, (37, 37), 1)
    assert type(vit.pe).__name__ == 'RoPEAxial'
    assert vit.blocks[0].ls1.gamma.eq(0.1).all()
    with pytest.raises(ValueError, match=r"mlp_layer='geglu'; valid: \('mlp', 'swiglu_packed'"):
        PEViT(arch='dinov2_small', depth=1, mlp_layer='geglu')
    with pytest.raises(ValueError, match=r"unknown keys \['mlp_type'\]"):
        PEViT(arch=dict(embed_dim=64, depth=1, num_heads=2, mlp_type='swiglu'))
    # the original's DINOv2 configs: no class token in the adapter, DINOv2's layer scale
    adapter = ViTAdapter(arch='dinov2_small', depth=4, deform_num_heads=6,
                         interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
    assert adapter.num_prefix_tokens == 0 and adapter.patch_size == 14
    assert adapter.blocks[0].ls1.gamma.eq(1e-5).all()
    state = PEViT(arch='dinov2_small_reg4', depth=4).state_dict()
    _, report = remap(state, adapter)
    assert sorted(report.dropped) == ['cls_token', 'norm.bias', 'norm.weight', 'reg_token']
    assert not report.unexpected and not report.missing


VIT_PARTS = ('patch_embed', 'cls_token', 'reg_token', 'pe', 'blocks', 'norm')


@pytest.mark.parametrize('inject', [True, False])
def test_frozen_vit_gets_no_gradient_nor_optimizer_slot(inject):
    from mmvitpe.engine import LayerDecayOptimizerConstructor
    model = ViTAdapter(embed_dim=64, depth=4, num_heads=4, deform_num_heads=4, conv_inplane=8,
                       interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], drop_path_rate=0.1,
                       vit_feature_mode='per_stage', final_norm=True, freeze_vit=True,
                       inject=inject).train()
    assert not any(m.training for m in model.blocks.modules()) and model.spm.training
    assert (model.interactions[0].injector is not None) == inject
    wrapper = LayerDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        dict(decay_rate=0.9))(model)
    block_outputs = []
    model.blocks[0].register_forward_hook(lambda m, args, out: block_outputs.append(out))
    loss = sum(level.square().mean() for level in model(torch.randn(1, 3, 64, 80)))
    # without injectors the ViT keeps no graph (nothing saved for backward); with them
    # its blocks pass the injectors' gradients on
    assert block_outputs[0].requires_grad == inject
    loss.backward()
    wrapper.optimizer.step()
    in_groups = {n for group in wrapper.optimizer.param_groups for n in group['param_names']}
    for name, param in model.named_parameters():
        if name.split('.')[0] in VIT_PARTS:
            assert param.grad is None and name not in in_groups, name
            assert param not in wrapper.optimizer.state, name
        else:
            assert param.grad is not None and param in wrapper.optimizer.state, name
    with pytest.raises(ValueError, match='init_values=0.1 is the injectors'):
        ViTAdapter(embed_dim=64, depth=2, num_heads=4, deform_num_heads=4,
                   interaction_indexes=[[0, 0], [1, 1]], inject=False, init_values=0.1)


def test_frozen_vit_under_bf16_autocast_is_close_to_float32():
    args = dict(embed_dim=64, depth=4, num_heads=4, deform_num_heads=4, conv_inplane=8,
                interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
                vit_feature_mode='per_stage', freeze_vit=True, inject=False)
    full = ViTAdapter(**args).eval()
    autocast = ViTAdapter(**args, vit_autocast='bfloat16').eval()
    autocast.load_state_dict(full.state_dict())
    img = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        for ref, out in zip(full(img), autocast(img)):
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)
            assert not torch.equal(out, ref)  # bf16 did run
    with pytest.raises(ValueError, match='the injectors need gradients through it'):
        ViTAdapter(**dict(args, inject=True), vit_autocast='bfloat16')
    with pytest.raises(ValueError, match='it needs freeze_vit=True'):
        ViTAdapter(**dict(args, freeze_vit=False), vit_autocast='bfloat16')
    with pytest.raises(ValueError, match="vit_autocast='bf16'; valid"):
        ViTAdapter(**args, vit_autocast='bf16')


# the official DINOv2 resize: bicubic by the scale factor (grid + 0.1) / 37, no antialias
OFFICIAL_DINOV2_RESIZE = dict(type='LearnedPE', antialias=False, interpolate_offset=0.1)


@pytest.mark.parametrize('variant,pos_embed', [('dinov2', OFFICIAL_DINOV2_RESIZE),
                                               ('dinov2_reg4', None)])
def test_official_dinov2_code_golden(variant, pos_embed):
    """The official DinoVisionTransformer (golden, tools/golden/make_dinov2_fixtures.py):
    its chunked state dict loads strictly and the normed patch tokens are equal at the
    pretraining grid and, with the official resize, at another one."""
    from helpers import FIXTURES
    golden = torch.load(f'{FIXTURES}/golden/dinov2.pt', weights_only=True)
    ref = golden[variant]
    config = ref['config']
    ours = PEViT(arch=variant.replace('dinov2', 'dinov2_small'), embed_dim=config['embed_dim'],
                 depth=config['depth'], num_heads=config['num_heads'],
                 pretrain_size=config['img_size'], pos_embed=pos_embed).eval()
    report = load_pretrained(ours, ref['state_dict'])
    assert list(report.dropped) == ['mask_token'] and not report.new and not report.resized
    for size, img in golden['images'].items():
        with torch.no_grad():
            tokens = ours.forward_features(img)[0][:, ours.num_prefix_tokens:]
        torch.testing.assert_close(tokens, ref['outs'][size], rtol=0, atol=1e-5, msg=str(size))
    if pos_embed is not None:  # timm's resize (the arch's default) is another one
        timm_resize = PEViT(arch='dinov2_small', embed_dim=config['embed_dim'],
                            depth=config['depth'], num_heads=config['num_heads'],
                            pretrain_size=config['img_size']).eval()
        load_pretrained(timm_resize, ref['state_dict'])
        with torch.no_grad():
            tokens = timm_resize.forward_features(golden['images'][(70, 98)])[0][:, 1:]
        assert (tokens - ref['outs'][(70, 98)]).abs().max() > 1e-2
    with pytest.raises(ValueError, match=r'interpolate_offset=1.5 must be a number in \[0, 1\)'):
        PEViT(arch='dinov2_small', depth=1, pos_embed=dict(type='LearnedPE',
                                                           interpolate_offset=1.5))


def test_a_config_over_an_arch_keeps_the_archs_table_layout():
    """The documented way to keep the prefix tokens of a reg4 arch, with a config's
    ``pos_embed=dict(type='LearnedPE')``: the arch's table without a class slot stays,
    so no row lacks a checkpoint value."""
    ref = perturbed(timm.create_model('vit_small_patch14_reg4_dinov2', pretrained=False,
                                      depth=2, img_size=98, num_classes=0)).eval()
    ours = PEViT(arch='dinov2_small_reg4', depth=2, pretrain_size=98, class_token=True,
                 num_register_tokens=4, pos_embed=dict(type='LearnedPE')).eval()
    assert ours.pe.table.num_slots == 0 and ours.pe.table.antialias
    report = load_pretrained(ours, ref.state_dict(), strict=True)
    assert not report.resized and not report.missing and not report.new
    assert_patch_tokens_equal(ours, ref, (98, 98))


def test_dinov3_7b_is_timms_and_one_block_of_it_runs_on_cpu():
    with torch.device('meta'):  # 6.7B parameters: counted, never allocated
        ours = PEViT(arch='dinov3_7b')
        ref = timm.create_model('vit_7b_patch16_dinov3', pretrained=False, num_classes=0)
    assert sum(p.numel() for p in ours.parameters()) == \
        sum(p.numel() for p in ref.parameters()) == 6_716_030_976
    # one block at full width (4096, SwiGLU of 8192), layer scale 1 so that it counts
    ref = timm.create_model('vit_7b_patch16_dinov3', pretrained=False, num_classes=0, depth=1,
                            img_size=64, init_values=1.0).eval()
    ours = PEViT(arch='dinov3_7b', depth=1, pretrain_size=64).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.ok and not report.resized and list(report.new) == ['pe.periods']
    assert_patch_tokens_equal(ours, ref, (48, 80), atol=2e-4)
