"""The adapter protocols on the dense base: ViTDet and DEIMv2's STA equal to their
official code, and every PE scheme through every protocol."""
import os

import pytest
import torch

from helpers import FIXTURES
from mmvitpe.models import STA, DINOv3Adapter, ViTAdapter, ViTBaseline, ViTDet
from mmvitpe.models.backbones import LastLevelMaxPool
from mmvitpe.models.backbones.dense import OUT_STRIDES
from mmvitpe.models.pos_encodings.rel_pos_decomposed import decomposed_terms
from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.weights import load_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMES = sorted(POS_ENCODINGS.module_dict)
TRUNK = dict(embed_dim=32, depth=4, num_heads=2, pretrain_size=64)
# each protocol at its smallest, with windows where it uses them
PROTOCOLS = {
    'ViTAdapter': lambda **kw: ViTAdapter(**TRUNK, deform_num_heads=2, conv_inplane=8,
                                          interaction_indexes=[[0, 1], [2, 3]],
                                          window_size=3, window_block_indexes=[0, 2], **kw),
    'DINOv3Adapter': lambda **kw: DINOv3Adapter(
        **dict(TRUNK, arch='tiny', deform_num_heads=2, conv_inplane=8,
               interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], **kw)),
    'ViTBaseline': lambda **kw: ViTBaseline(**TRUNK, window_size=3, window_block_indexes=[0, 2],
                                            **kw),
    'ViTDet': lambda **kw: ViTDet(**TRUNK, preset='tiny', window_size=3,
                                  window_block_indexes=[0, 2], out_channels=16, **kw),
    'STA': lambda **kw: STA(**dict(TRUNK, arch='tiny', conv_inplane=8, **kw)),
}


def golden(name):
    return torch.load(f'{FIXTURES}/golden/{name}', weights_only=True)


def test_decomposed_relative_position_equals_detectron2s():
    """detectron2's add_decomposed_rel_pos (golden, tools/golden/make_vitdet_fixtures.py),
    tables of the attention grid's length and of others (resized linearly), queries and
    keys on one grid and on two."""
    for case in golden('vitdet.pt')['rel_pos_cases']:
        terms = decomposed_terms(case['q'], case['rel_pos_h'], case['rel_pos_w'],
                                 case['q_size'], case['k_size'])
        torch.testing.assert_close(case['attn'] + terms, case['out'], rtol=0, atol=1e-5)


def test_vitdet_equals_detectron2s_vit_and_simple_feature_pyramid():
    """detectron2's ViT + SimpleFeaturePyramid + LastLevelMaxPool (golden, from the
    official code at a pinned commit): its state dict loads strictly through the
    ViTDet family (the class slot of the 4x4 table dropped), and p2..p6 are equal at
    a 6x8 grid, where the 3x3 windows pad and the abs table and the global blocks'
    relative tables are resized."""
    g = golden('vitdet.pt')
    vit, sfp = g['config']['vit'], g['config']['sfp']
    model = ViTDet(preset='tiny', embed_dim=vit['embed_dim'], depth=vit['depth'],
                   num_heads=vit['num_heads'], mlp_ratio=vit['mlp_ratio'],
                   pretrain_size=vit['pretrain_img_size'], window_size=vit['window_size'],
                   window_block_indexes=vit['window_block_indexes'],
                   input_size=vit['img_size'], out_channels=sfp['out_channels']).eval()
    report = load_pretrained(model, dict(g['state_dict']))
    assert not report.new and not report.dropped
    assert list(report.resized) == ['pe.members.0.table.weight']
    with torch.no_grad():
        outs = LastLevelMaxPool()(model(g['img']))
    for ours, (name, ref) in zip(outs, g['outs'].items(), strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5, msg=name)


def test_window_padding_of_tokens_differs_from_padding_qkv():
    """ViTDet pads the normed tokens (padded keys are the qkv bias); ViT-Adapter pads
    q, k, v with zeros: on the same weights the two agree where the windows tile the
    grid (96 px: 6x6 patches, 3x3 windows) and differ where they pad (64 px: 4x4)."""
    qkv = ViTBaseline(**TRUNK, window_size=3, window_block_indexes=[0, 2]).eval()
    with torch.no_grad():  # the biases start at zero, where both paddings are one
        for block in qkv.blocks:
            block.attn.qkv.bias.normal_()
    tokens = ViTBaseline(**TRUNK, window_size=3, window_block_indexes=[0, 2],
                         window_padding='tokens').eval()
    tokens.load_state_dict(qkv.state_dict())
    with torch.no_grad():
        for size, same in ((96, True), (64, False)):
            img = torch.randn(1, 3, size, size)
            close = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(qkv(img), tokens(img)))
            assert close == same, size
    with pytest.raises(ValueError, match=r"window_padding='zeros'; valid: \('qkv', 'tokens'\)"):
        ViTBaseline(**TRUNK, window_padding='zeros')


def test_sta_equals_deimv2s_three_levels():
    """DEIMv2's DINOv3STAs on its DINOv3 (golden, tools/golden/make_sta_fixtures.py):
    strict load through the DEIMv2 family; strides 8, 16, 32 equal; the stride-4
    level is the one part that starts new."""
    g = golden('deimv2_sta.pt')
    vit, sta = g['config']['vit'], g['config']['sta']
    model = STA(arch='dinov3_small', embed_dim=vit['embed_dim'], depth=vit['depth'],
                num_heads=vit['num_heads'], qkv_bias=True,
                interaction_indexes=sta['interaction_indexes'],
                conv_inplane=sta['conv_inplane'], out_channels=sta['hidden_dim']).eval()
    report = load_pretrained(model, dict(g['state_dict']))
    assert set(report.new) == {'stride4_conv.weight'} | {
        f'norm1.{k}' for k in ('weight', 'bias', 'running_mean', 'running_var',
                               'num_batches_tracked')}
    with torch.no_grad():
        outs = model(g['img'])
    assert outs[0].shape == (1, sta['hidden_dim'], 24, 32)
    for ours, ref in zip(outs[1:], g['outs'], strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize('protocol', sorted(PROTOCOLS))
@pytest.mark.parametrize('scheme', SCHEMES)
def test_every_scheme_through_every_protocol(protocol, scheme):
    """At an odd size (a 4x6 grid: windows padded), with a class and register tokens
    where the scheme takes them: four levels of ceil(H / stride), finite, and every
    trainable parameter gets a gradient."""
    prefix = dict(class_token=POS_ENCODINGS.module_dict[scheme].supports_class_token,
                  num_register_tokens=2)
    final_norm = POS_ENCODINGS.module_dict[scheme].acts_at_final_norm or protocol in (
        'DINOv3Adapter', 'STA')
    model = PROTOCOLS[protocol](pos_embed=dict(type=scheme), final_norm=final_norm, **prefix)
    img = torch.randn(2, 3, 50, 78)
    outs = model(img)
    assert [o.shape[-2:] for o in outs] == [(-(-50 // s), -(-78 // s)) for s in OUT_STRIDES]
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.square().mean() for o in outs).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


@pytest.mark.parametrize('protocol', sorted(set(PROTOCOLS) - {'DINOv3Adapter'}))
def test_a_frozen_trunk_gets_no_gradient_and_stays_in_eval_mode(protocol):
    model = PROTOCOLS[protocol](freeze_vit=True).train()
    assert not model.blocks.training and not model.patch_embed.training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('patch_embed.', 'pe.', 'blocks.', 'norm.', 'cls_token'))
                          for n in frozen)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_protocols_declare_their_output_shape_and_padding():
    for name, build in PROTOCOLS.items():
        model = build()
        assert model.padding_constraints == dict(size_divisibility=32)
        shape = model.output_shape()
        assert [s['stride'] for s in shape.values()] == list(OUT_STRIDES), name
        outs = model(torch.randn(1, 3, 64, 64))
        assert [o.shape[1] for o in outs] == [s['channels'] for s in shape.values()], name


PROTOCOL_CONFIGS = ['configs/vitdet/mask-rcnn_vitdet-t_lsj-100e_coco.py',
                    'configs/vitdet/upernet_vitdet-t_512x512_160k_ade20k.py',
                    'configs/sta/mask-rcnn_sta-t_fpn_3x_coco.py',
                    'configs/sta/upernet_sta-t_512x512_160k_ade20k.py']


@pytest.mark.parametrize('path', PROTOCOL_CONFIGS, ids=lambda p: os.path.basename(p))
def test_protocol_configs_train_one_step_at_a_tiny_size(path):
    """The config's detector or segmentor, heads, data preprocessor and optimizer with
    a 4-block trunk of width 32: one step gives a finite loss and moves the trunk."""
    from mmengine.config import Config
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from helpers import seg_batch
    cfg = Config.fromfile(os.path.join(REPO, path))
    cfg.model.backbone.update(embed_dim=32, depth=4, num_heads=2, init_cfg=None)
    if cfg.model.backbone.type == 'mmvitpe.ViTDet':
        cfg.model.backbone.update(window_size=2, window_block_indexes=[0, 2])
    width = cfg.model.backbone.get('out_channels', 32)
    if cfg.default_scope == 'mmdet':
        cfg.model.data_preprocessor.batch_augments = None  # not 1024 squares here
        if 'in_channels' in cfg.model.neck:
            cfg.model.neck.in_channels = [width] * 4
    else:
        cfg.model.data_preprocessor.size = (64, 64)
        cfg.model.decode_head.update(in_channels=[width] * 4, channels=16)
        cfg.model.auxiliary_head.update(in_channels=width, channels=8)
    if cfg.optim_wrapper.get('paramwise_cfg', {}).get('num_layers'):
        cfg.optim_wrapper.paramwise_cfg.num_layers = 4
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = revert_sync_batchnorm(registry.build(cfg.model)).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.blocks[0].attn.qkv.weight.detach().clone()
    if cfg.default_scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        batch = demo_mm_inputs(2, [[3, 64, 96], [3, 80, 70]], num_classes=80, with_mask=True)
    else:
        batch = seg_batch(num_classes=150)
    loss, _ = model.parse_losses(model(**model.data_preprocessor(batch, True), mode='loss'))
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    assert not torch.equal(model.backbone.blocks[0].attn.qkv.weight, before)


def test_mae_weights_load_strictly_into_vitdet_and_equal_the_vit_at_the_start():
    """An MAE / DeiT-layout ViT (class token, table with its class slot, final norm,
    timm's names) into ViTDet, strictly: as ViTDet, the class token and the final norm
    dropped and the table's slot with them. With the class token kept and no windows,
    the trunk's last map is the ViT's own patch tokens: the relative tables start at
    zero."""
    from timm.models.vision_transformer import VisionTransformer
    mae = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=4, num_heads=2,
                            num_classes=0, global_pool='token', fc_norm=False).eval()
    state = dict(mae.state_dict())
    model = ViTDet(**TRUNK, preset='tiny', window_size=2, window_block_indexes=[0, 2],
                   out_channels=16).eval()
    report = load_pretrained(model, state)
    assert set(report.dropped) == {'cls_token', 'norm.weight', 'norm.bias'}
    assert 'pe.members.0.table.weight' in report.resized
    assert all(k.startswith(('pe.members.1.', 'simfp_')) for k in report.new)
    with_class = ViTDet(**TRUNK, preset='tiny', window_size=0, window_block_indexes=[],
                        class_token=True, out_channels=16).eval()
    load_pretrained(with_class, state)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (ours,) = with_class.trunk_maps(img, [3])
        tokens = mae.blocks(mae._pos_embed(mae.patch_embed(img)))[:, 1:]
    torch.testing.assert_close(ours, tokens.transpose(1, 2).reshape(1, 32, 4, 4),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize('protocol', sorted(PROTOCOLS))
def test_patch_14_levels_cover_the_image(protocol):
    """A 14-px grid spans more than the 32-padded image: every level is still
    ceil(H / stride) (ViTDet's max-pool keeps an odd last row, STA resamples its taps
    at the levels' pixels)."""
    model = PROTOCOLS[protocol](patch_size=14).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 256, 288))
    assert [tuple(o.shape[-2:]) for o in outs] == [(-(-256 // s), -(-288 // s))
                                                  for s in OUT_STRIDES]


def test_vitdet_sizes_its_global_relative_tables_for_its_input_size():
    """input_size sizes the global blocks' tables whichever way the PE is given (the
    model's input grid is PE context), and a bad one names itself."""
    lengths = []
    for pos_embed in (None, dict(type='ViTDetPE'), dict(type='RelPosDecomposed')):
        model = ViTDet(**TRUNK, preset='tiny', window_size=2, window_block_indexes=[0],
                       input_size=512, pos_embed=pos_embed)
        tables = {k: v.shape[0] for k, v in model.pe.state_dict().items() if 'tables_h' in k}
        lengths.append(sorted(set(tables.values())))
    assert lengths == [[3, 63]] * 3  # windows of 2; 512 / 16 = 32 -> 2 * 32 - 1
    with pytest.raises(ValueError, match=r'ViTDet: input_size=\(8, 8\) with patch_size=16'):
        ViTDet(**TRUNK, preset='tiny', window_size=2, window_block_indexes=[0], input_size=8)


def test_arguments_a_protocol_does_not_use_are_refused():
    with pytest.raises(TypeError, match=r"ViTDet reads the blocks its protocol defines; "
                                        r"out_indices is PEViT's read-out"):
        PROTOCOLS['ViTDet'](out_indices=[3])
    with pytest.raises(TypeError, match=r"ViTBaseline: out_channels=16: its levels have the "
                                        r"trunk's width"):
        PROTOCOLS['ViTBaseline'](out_channels=16)
    with pytest.warns(FutureWarning, match='vit_final_norm is deprecated'):
        sta = PROTOCOLS['STA'](vit_final_norm=False)  # STA's default does not clash with it
    assert sta.norm is None
