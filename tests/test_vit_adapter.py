"""ViT-Adapter and the ViT baseline on the PE-pluggable core."""
import math

import pytest
import torch

from mmvitpe.models import PEViT, ViTAdapter, ViTBaseline
from mmvitpe.registry import POS_ENCODINGS

from helpers import tiny_adapter

FOUR = [[0, 0], [1, 1], [2, 2], [3, 3]]


def adapter(preset='tiny', **kw):
    cfg = dict(preset=preset, depth=4, interaction_indexes=FOUR, pretrain_size=64)
    cfg.update(kw)
    return ViTAdapter(**cfg)


def expected_shapes(batch, dim, h, w):
    return [(batch, dim, math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


@pytest.mark.parametrize('preset,dim', [('tiny', 192), ('small', 384), ('base', 768),
                                        ('large', 1024)])
def test_presets_give_four_levels_at_any_size(preset, dim):
    model = adapter(preset, conv_inplane=16).eval()
    assert model.embed_dim == dim
    with torch.no_grad():
        for h, w in [(64, 96), (333, 517) if preset == 'tiny' else (100, 70)]:
            outs = model(torch.randn(1, 3, h, w))
            assert [tuple(o.shape) for o in outs] == expected_shapes(1, dim, h, w)


def test_presets_match_the_original_configs():
    base = ViTAdapter(preset='base', conv_inplane=8)
    assert (base.depth, base.num_heads) == (12, 12)
    attn = base.interactions[0].injector.attn
    assert attn.num_heads == 12 and attn.value_proj.out_features == 384  # deform_ratio 0.5
    assert len(base.interactions[-1].extra_extractors) == 2
    assert base.interactions[0].extra_extractors is None
    assert base.interactions[0].extractor.drop_path.drop_prob == 0.3


@pytest.mark.parametrize('scheme', sorted(POS_ENCODINGS.module_dict))
def test_every_pe_scheme_runs_forward_backward(scheme, device):
    # as the detection configs: windows in some blocks; the final norm carries MPVG's term
    model = adapter(pos_embed=dict(type=scheme), embed_dim=64, num_heads=4,
                    deform_num_heads=4, conv_inplane=8, final_norm=True,
                    window_size=3, window_block_indexes=[0, 2]).to(device)
    img = torch.randn(2, 3, 75, 101, device=device)
    outs = model(img)
    assert [tuple(o.shape) for o in outs] == expected_shapes(2, 64, 75, 101)
    sum(o.square().mean() for o in outs).backward()
    # every parameter is used (DDP without find_unused_parameters relies on it)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    for name in ('spm.fc1.weight', 'level_embed', 'interactions.0.injector.gamma',
                 'blocks.3.mlp.fc2.weight', 'up.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_injector_starts_neutral_so_the_vit_is_undisturbed():
    model = adapter(embed_dim=64, num_heads=4, deform_num_heads=4, conv_inplane=8).eval()
    vit = PEViT(embed_dim=64, depth=4, num_heads=4, pretrain_size=64, final_norm=False).eval()
    vit.load_state_dict(model.state_dict(), strict=False)
    img = torch.randn(1, 3, 64, 96)
    seen = []
    model.interactions[-1].extractor.register_forward_pre_hook(
        lambda m, args: seen.append(args[1]))
    with torch.no_grad():
        model(img)
        x, state = vit.embed(img)
        torch.testing.assert_close(seen[0], vit.forward_blocks(x, state))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_keeps_deformable_attention_in_fp32(dtype, device):
    model = adapter(embed_dim=64, num_heads=4, deform_num_heads=4, conv_inplane=8)
    model = model.to(device).eval()
    img = torch.randn(1, 3, 64, 64, device=device)
    dtypes = []
    model.interactions[0].injector.attn.register_forward_hook(
        lambda m, args, out: dtypes.append(out.dtype))
    with torch.no_grad():
        ref = model(img)
        with torch.autocast(device, dtype=dtype):
            low = model(img)
    assert dtypes == [torch.float32, torch.float32]
    for a, b in zip(low, ref):
        assert torch.isfinite(a).all()
        assert (a.float() - b).abs().mean() < 0.05 * b.abs().mean()
    with torch.autocast(device, dtype=dtype):
        outs = model(img)
    sum(o.float().square().mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_window_attention_is_local_and_handles_padding(device):
    # pretrained at 8 x 8 tokens: a window may not exceed the pretraining grid
    kw = dict(embed_dim=64, num_heads=4, deform_num_heads=4, conv_inplane=8, pretrain_size=128)
    windowed = adapter(window_size=3, window_block_indexes=[0, 1, 2, 3], **kw).to(device).eval()
    global_ = adapter(**kw).to(device).eval()
    global_.load_state_dict(windowed.state_dict())
    img = torch.randn(1, 3, 112, 80, device=device)  # 7 x 5 tokens: windows need padding
    with torch.no_grad():
        a, b = windowed(img), global_(img)
    assert [o.shape for o in a] == [o.shape for o in b]
    assert not torch.allclose(a[2], b[2])
    # a window block equals global attention when one window exactly covers the
    # grid (8 x 8 tokens); padded windows keep their zero keys, as ViT-Adapter does
    big = adapter(window_size=8, window_block_indexes=[0, 1, 2, 3], **kw).to(device).eval()
    big.load_state_dict(windowed.state_dict())
    img = torch.randn(1, 3, 128, 128, device=device)
    with torch.no_grad():
        for x, y in zip(big(img), global_(img)):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_syncbn_config_runs_single_process_on_cpu():
    """Without a process group SyncBN normalises with the batch's statistics, as BN does."""
    kw = dict(embed_dim=64, num_heads=4, deform_num_heads=4, conv_inplane=8)
    model = adapter(norm_cfg=dict(type='SyncBN'), **kw)
    assert isinstance(model.norm1, torch.nn.SyncBatchNorm)
    plain = adapter(norm_cfg=dict(type='BN'), **kw)
    plain.load_state_dict(model.state_dict())
    img = torch.randn(2, 3, 64, 64)
    outs = []
    for m in (model, plain):
        torch.manual_seed(1)  # the same drop-path draws
        outs.append(m(img))
        sum(o.mean() for o in outs[-1]).backward()
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    grad = model.spm.stem[0].bn.weight.grad
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, plain.spm.stem[0].bn.weight.grad)


def test_group_norm_config():
    model = adapter(norm_cfg=dict(type='GN', num_groups=8), embed_dim=64, num_heads=4,
                    deform_num_heads=4, conv_inplane=8)
    assert isinstance(model.norm4, torch.nn.GroupNorm)
    assert model(torch.randn(1, 3, 64, 64))[3].shape == (1, 64, 2, 2)


def test_gradient_checkpointing_gives_the_same_gradients(device):
    kw = dict(embed_dim=64, num_heads=4, deform_num_heads=4, conv_inplane=8)
    plain, checkpointed = adapter(**kw).to(device), adapter(with_cp=True, **kw).to(device)
    checkpointed.load_state_dict(plain.state_dict())
    img = torch.randn(2, 3, 64, 64, device=device)
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(1)
        sum(o.sum() for o in model(img)).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name, atol=1e-5, rtol=1e-4)


def test_pretrained_is_not_loaded_in_init():
    model = adapter(pretrained='/nonexistent/deit.pth', conv_inplane=8)
    assert model.init_cfg == dict(type='Pretrained', checkpoint='/nonexistent/deit.pth')
    with pytest.raises(FileNotFoundError, match='/nonexistent/deit.pth'):
        model.init_weights()


@pytest.mark.parametrize('kwargs,match', [
    (dict(preset='huge'), "unknown preset 'huge'.*'base', 'large', 'small', 'tiny'"),
    (dict(interaction_indexes=[[0, 1], [3, 3]]), 'must cover blocks 0..3'),
    (dict(class_token=True, pos_embed=dict(type='MPVG'), final_norm=True),
     'MPVG.*class_token=False'),
    (dict(vit_feature_mode='first'), "vit_feature_mode='first'"),
    (dict(pos_embed=dict(type='MPVG')), 'MPVG adds a term at the final norm.*final_norm'),
])
def test_bad_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adapter(**kwargs)


def test_vit_baseline_pyramid():
    model = ViTBaseline(embed_dim=64, depth=4, num_heads=4, pos_embed=dict(type='PEG'))
    outs = model(torch.randn(2, 3, 100, 140))
    assert [tuple(o.shape) for o in outs] == expected_shapes(2, 64, 100, 140)
    assert model.out_indices == [0, 1, 2, 3]
    with pytest.raises(ValueError, match='out_indices'):
        ViTBaseline(embed_dim=64, depth=4, num_heads=4, out_indices=[0, 1, 5, 3])


@pytest.mark.parametrize('scheme', sorted(POS_ENCODINGS.module_dict))
def test_vit_baseline_runs_every_pe_scheme_with_syncbn_on_cpu(scheme):
    model = ViTBaseline(embed_dim=64, depth=4, num_heads=4, pos_embed=dict(type=scheme),
                        final_norm=True, norm_cfg=dict(type='SyncBN'), window_size=2,
                        window_block_indexes=[0, 2])
    outs = model(torch.randn(2, 3, 75, 101))
    assert [tuple(o.shape) for o in outs] == expected_shapes(2, 64, 75, 101)
    sum(o.square().mean() for o in outs).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_vit_baseline_levels_stay_aligned_with_the_image():
    """With window-local tokens, a 64x64 crop gives the whole image's features
    over the crop at every level (a resized pyramid would not)."""
    model = ViTBaseline(embed_dim=64, depth=4, num_heads=4, pos_embed=dict(type='NoPE'),
                        window_size=2, window_block_indexes=[0, 1, 2, 3]).eval()
    img = torch.randn(1, 3, 100, 140)
    with torch.no_grad():
        whole, crop = model(img), model(img[..., :64, :64])
    assert [tuple(o.shape) for o in whole] == expected_shapes(1, 64, 100, 140)
    for stride, a, b in zip((4, 8, 16, 32), whole, crop):
        n = 64 // stride
        torch.testing.assert_close(a[..., :n, :n], b, msg=f'stride {stride}')


def test_layer_decay_groups_follow_the_documented_layer_ids():
    from mmengine.optim import build_optim_wrapper
    from torch import nn
    import mmvitpe  # noqa: F401

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = adapter(embed_dim=64, num_heads=4, deform_num_heads=4,
                                    conv_inplane=8, pos_embed=dict(type='RelPosBias'))
            self.neck = nn.Linear(4, 4)

    model = Detector()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='mmvitpe.LayerDecayOptimizerConstructor',
        paramwise_cfg=dict(decay_rate=0.5)))
    lr_of = {n: g['lr'] for g in wrapper.optimizer.param_groups for n in g['param_names']}
    wd_of = {n: g['weight_decay'] for g in wrapper.optimizer.param_groups
             for n in g['param_names']}
    assert len(lr_of) == sum(1 for _ in model.parameters())
    top = 1e-3
    # depth 4 -> 6 layers; layer id k gets 0.5 ** (5 - k)
    assert lr_of['backbone.patch_embed.proj.weight'] == pytest.approx(top * 0.5 ** 5)
    assert lr_of['backbone.pe.tables.0'] == pytest.approx(top * 0.5 ** 4)
    assert lr_of['backbone.blocks.0.attn.qkv.weight'] == pytest.approx(top * 0.5 ** 4)
    assert lr_of['backbone.blocks.3.mlp.fc1.weight'] == pytest.approx(top * 0.5 ** 1)
    for name in ('backbone.spm.fc1.weight', 'backbone.interactions.0.injector.gamma',
                 'backbone.level_embed', 'neck.weight'):
        assert lr_of[name] == pytest.approx(top), name
    assert wd_of['backbone.blocks.0.attn.qkv.weight'] == 0.05
    for name in ('backbone.blocks.0.attn.qkv.bias', 'backbone.blocks.0.norm1.weight',
                 'backbone.pe.tables.0', 'backbone.level_embed'):
        assert wd_of[name] == 0, name
    original_spelling = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='mmvitpe.LayerDecayOptimizerConstructor',
        paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.5)))
    assert {n: g['lr'] for g in original_spelling.optimizer.param_groups
            for n in g['param_names']} == lr_of
    for paramwise_cfg, match in [
            (dict(layer_decay_rate=0.9, num_layers=12), 'num_layers=12, but the backbone has 4'),
            (dict(decay_rate=0.9, layer_decay_rate=0.9), 'takes decay_rate, or'),
            (dict(decay_rate=0.9, decay_mult=0.), "got \\['decay_mult', 'decay_rate'\\]"),
            (dict(decay_rate=1.5), 'decay_rate=1.5 must be in')]:
        with pytest.raises(ValueError, match=match):
            build_optim_wrapper(model, dict(
                optimizer=dict(type='AdamW', lr=1e-3),
                constructor='mmvitpe.LayerDecayOptimizerConstructor',
                paramwise_cfg=paramwise_cfg))


def test_pe_parameters_get_the_layer_id_of_where_they_act():
    model = PEViT(embed_dim=32, depth=4, num_heads=4, pretrain_size=64,
                  pos_embed=dict(type='MPVG'))
    layer = {n: model.get_layer_depth(n)[0] for n, _ in model.named_parameters()}
    assert layer['pe.table.weight'] == 0  # the shared table, as the patch embedding
    assert (layer['pe.norms.1.weight'], layer['pe.norms.3.bias']) == (2, 4)  # blocks 1, 3
    assert layer['pe.last_norm_layer.weight'] == layer['norm.weight'] == 5  # the top


def test_adapter_inside_real_mask_rcnn_and_upernet():
    """The one backbone class serves mmdet and mmseg models built from upstream bases."""
    import os
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import get_installed_path
    backbone = dict(type='mmvitpe.ViTAdapter', preset='tiny', embed_dim=64, num_heads=4,
                    depth=4, deform_num_heads=4, conv_inplane=8, interaction_indexes=FOUR,
                    pos_embed=dict(type='MPVG'), final_norm=True)

    def base(pkg, path):
        return Config.fromfile(os.path.join(get_installed_path(pkg), '.mim', 'configs', path))

    from mmdet.registry import MODELS as DET
    from mmdet.testing import demo_mm_inputs
    init_default_scope('mmdet')
    det = base('mmdet', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model
    det.backbone = backbone
    det.neck.in_channels = [64] * 4
    detector = DET.build(det)
    data = detector.data_preprocessor(
        demo_mm_inputs(2, [[3, 96, 128], [3, 90, 110]], num_classes=80, with_mask=True), True)
    losses = detector(**data, mode='loss')
    assert torch.isfinite(losses['loss_mask']) and losses['loss_mask'] > 0

    from mmseg.registry import MODELS as SEG
    init_default_scope('mmseg')
    seg = base('mmseg', 'upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py').model
    seg.pretrained = None
    seg.backbone = backbone
    seg.decode_head.update(in_channels=[64] * 4, channels=32, num_classes=5,
                           norm_cfg=dict(type='BN'))
    seg.auxiliary_head.update(in_channels=64, channels=16, num_classes=5,
                              norm_cfg=dict(type='BN'))
    segmentor = SEG.build(seg).eval()
    assert type(segmentor.backbone) is type(detector.backbone)
    with torch.no_grad():
        logits = segmentor(torch.randn(1, 3, 64, 96), mode='tensor')
    assert logits.shape == (1, 5, 16, 24)


@pytest.mark.parametrize('layout,mode', [('det', 'last'), ('seg', 'per_stage')])
def test_converted_original_weights_reproduce_the_original_outputs(layout, mode):
    """Golden outputs of czczup/ViT-Adapter (tools/golden/make_vit_adapter_fixtures.py)."""
    import os
    from helpers import FIXTURES
    from mmvitpe.weights import load_pretrained
    g = torch.load(os.path.join(FIXTURES, 'golden', f'vit_adapter_{layout}.pt'),
                   weights_only=True)
    cfg = g['config']
    model = ViTAdapter(
        embed_dim=cfg['embed_dim'], depth=cfg['depth'], num_heads=cfg['num_heads'],
        pretrain_size=cfg['pretrain_size'], conv_inplane=cfg['conv_inplane'],
        n_points=cfg['n_points'], deform_num_heads=cfg['deform_num_heads'],
        deform_ratio=cfg['deform_ratio'], interaction_indexes=cfg['interaction_indexes'],
        cffn_ratio=cfg['cffn_ratio'], drop_path_rate=0., window_size=cfg['window_size'],
        vit_feature_mode=mode).eval()
    report = load_pretrained(model, g['state_dict'], strict=True)
    assert not report.new and report.resized == {'pe.table.weight': '(1, 17, 32) -> (1, 16, 32)'}
    with torch.no_grad():
        outs = model(g['img'])
    for ours, ref in zip(outs, g['outs']):
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() < 1e-4
    # and the two layouts really differ, so the mode matters
    other = 'per_stage' if mode == 'last' else 'last'
    model.vit_feature_mode = other
    with torch.no_grad():
        assert (model(g['img'])[0] - g['outs'][0]).abs().max() > 1e-2


def test_position_table_fit_keeps_every_patch_position():
    model = adapter(embed_dim=32, num_heads=2, deform_num_heads=2, conv_inplane=8)
    with_slot = torch.randn(1, 1 + 8 * 8, 32)
    fitted, not_filled = model.pe.table.fit_checkpoint(with_slot)
    assert fitted.shape == (1, 16, 32) and not_filled == ''  # 8x8+cls -> 4x4
    exact = torch.randn(1, 16, 32)
    fitted, not_filled = model.pe.table.fit_checkpoint(exact)
    torch.testing.assert_close(fitted, exact)
    assert not_filled == ''
    with pytest.raises(ValueError, match='neither a square grid'):
        model.pe.table.fit_checkpoint(torch.randn(1, 15, 32))


def test_adapter_takes_one_channel_images_and_empty_batches():
    model = tiny_adapter(in_channels=1).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 1, 64, 96))
        empty = tiny_adapter().eval()(torch.randn(0, 3, 64, 96))
    assert [o.shape for o in outs] == [(2, 32, 16, 24), (2, 32, 8, 12), (2, 32, 4, 6),
                                       (2, 32, 2, 3)]
    assert [o.shape for o in empty] == [(0, 32, 16, 24), (0, 32, 8, 12), (0, 32, 4, 6),
                                        (0, 32, 2, 3)]


@pytest.mark.parametrize('dtype,tolerance', [(torch.float64, 1e-5), (torch.float16, 0.05),
                                             (torch.bfloat16, 0.05)])
def test_adapter_converted_to_another_dtype_runs_in_it(dtype, tolerance):
    """Policy: the whole model runs in its dtype, except the deformable attention,
    whose parameters stay fp32 under .half()/.bfloat16() (it computes in fp32)."""
    model = tiny_adapter().eval()
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
