"""Foundation ViTs in the dense backbones: prefix tokens through the blocks, the
frozen extractor-only path (protocol 2), and patch 14."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmvitpe.models import DINOv3Adapter, PEViT, ViTAdapter, ViTBaseline
from mmvitpe.models.timm_models import TimmPEViT
from mmvitpe.registry import POS_ENCODINGS

# a tiny adapter: 4 blocks, one per interaction; windows need a pretraining grid >= 3
TINY_ADAPTER = dict(embed_dim=32, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
                    interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], pretrain_size=64)
PREFIX = dict(class_token=True, num_register_tokens=4)


def window_mask(grid, window, num_prefix):
    """(P+N, P+N) bool: who may attend to whom in a windowed block with prefix tokens,
    for a grid the windows tile exactly."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing='ij')
    window_id = ((rows // window) * (grid[1] // window) + cols // window).reshape(-1)
    allowed = torch.ones(num_prefix + window_id.numel(), num_prefix + window_id.numel(),
                         dtype=torch.bool)
    allowed[num_prefix:, num_prefix:] = window_id[:, None] == window_id[None, :]
    return allowed


def test_windowed_block_with_prefix_tokens_is_masked_global_attention():
    """Patch tokens see their window and every prefix token; prefix tokens see all."""
    vit = PEViT(embed_dim=32, depth=1, num_heads=2, patch_size=8, pretrain_size=64,
                window_size=[2], pos_embed=dict(type='ALiBi2D'), **PREFIX).eval()
    grid, prefix = (4, 6), 5
    x = torch.randn(2, prefix + grid[0] * grid[1], 32)
    attn = vit.blocks[0].attn
    state = vit.pe.prepare(grid, x.device, x.dtype)
    with torch.no_grad():
        ours = attn(x, 0, vit.pe, state)
        q, k, v = attn.qkv(x).view(2, -1, 3, 2, 16).permute(2, 0, 3, 1, 4).unbind(0)
        # ALiBi depends on offsets only: the whole grid's bias holds every window's
        bias, _ = vit.pe.logit_terms(0, grid, state, prefix)
        mask = bias.masked_fill(~window_mask(grid, 2, prefix), float('-inf'))
        ref = attn.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None])
                        .transpose(1, 2).reshape(x.shape))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def capture_blocks(model):
    """[(input, output)] of every ViT block call, in order."""
    calls = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, args, out: calls.append((args[0], out)))
    return calls


@pytest.mark.parametrize('pos_embed', [dict(type='LearnedPE'), dict(type='RoPEDINOv3'),
                                       dict(type='BEiTPE')], ids=lambda p: p['type'])
def test_prefix_tokens_run_through_the_adapter_blocks_only(pos_embed):
    model = ViTAdapter(**TINY_ADAPTER, **PREFIX, pos_embed=pos_embed, init_values=0.5,
                       window_size=3, window_block_indexes=[0, 2]).train()
    calls = capture_blocks(model)
    img = torch.randn(2, 3, 70, 130)  # odd: padded to 96 x 160 inside, windows padded too
    outs = model(img)
    assert [tuple(o.shape) for o in outs] == [
        (2, 32, math.ceil(70 / s), math.ceil(130 / s)) for s in (4, 8, 16, 32)]
    prefix = model.num_prefix_tokens
    assert prefix == 5 and calls[0][0].shape[1] == prefix + 6 * 10
    for (inp, out), (next_inp, _) in zip(calls, calls[1:]):
        # the blocks update the prefix tokens; the injector between them leaves them
        # alone and changes the patch tokens (gamma 0.5)
        assert not torch.allclose(inp[:, :prefix], out[:, :prefix])
        torch.testing.assert_close(next_inp[:, :prefix], out[:, :prefix], rtol=0, atol=0)
        assert not torch.allclose(next_inp[:, prefix:], out[:, prefix:])
    sum(o.square().mean() for o in outs).backward()
    # the prefix tokens reach the outputs through attention
    assert model.cls_token.grad.abs().sum() > 0 and model.reg_token.grad.abs().sum() > 0


def test_prefix_tokens_in_the_baseline_and_the_frozen_extractor_only_adapter():
    baseline = ViTBaseline(embed_dim=32, depth=4, num_heads=2, pretrain_size=64, **PREFIX,
                           window_size=3, window_block_indexes=[1])
    outs = baseline(torch.randn(1, 3, 50, 78))
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(50 / s), math.ceil(78 / s)) for s in (4, 8, 16, 32)]
    sum(o.square().mean() for o in outs).backward()
    assert baseline.cls_token.grad.abs().sum() > 0 and baseline.reg_token.grad.abs().sum() > 0
    # DINOv3's layout in protocol 2: class + 4 storage tokens, RoPE, frozen, no injectors
    frozen = ViTAdapter(arch='dinov3_small', **dict(TINY_ADAPTER, pretrain_size=256), **PREFIX,
                        freeze_vit=True, inject=False, vit_feature_mode='per_stage',
                        final_norm=True).train()
    calls = capture_blocks(frozen)
    outs = frozen(torch.randn(1, 3, 66, 50))
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(66 / s), math.ceil(50 / s)) for s in (4, 8, 16, 32)]
    # (layer scale 1e-5: small updates, but updates)
    assert all(not torch.equal(i[:, :5], o[:, :5]) for i, o in calls)


def test_bad_prefix_token_combinations_name_the_value():
    with pytest.raises(ValueError, match='MPVG'):
        ViTAdapter(**TINY_ADAPTER, class_token=True, pos_embed=dict(type='MPVG'),
                   final_norm=True)
    with pytest.raises(ValueError, match='num_register_tokens=-1'):
        ViTAdapter(**TINY_ADAPTER, num_register_tokens=-1)
    with pytest.raises(TypeError, match="class_token='yes'"):
        ViTBaseline(embed_dim=32, depth=4, num_heads=2, class_token='yes')
    with pytest.raises(ValueError, match='class_entries=True needs a class token'):
        ViTAdapter(**TINY_ADAPTER, num_register_tokens=2,
                   pos_embed=dict(type='RelPosBias', class_entries=True))


@pytest.mark.parametrize('inject', [False, True], ids=['protocol2', 'frozen_with_injectors'])
def test_frozen_vit_keeps_no_activations_and_gets_no_optimizer_slot(inject):
    """Protocol 2 (freeze_vit=True, inject=False): nothing the ViT computes is saved
    for backward (counted on the autograd graph's saved tensors); with injectors the
    frozen blocks must keep theirs to pass gradients on, which shows the count works.
    The optimizer comes from a config, with the layer-decay constructor."""
    from mmengine.optim import build_optim_wrapper
    from torch import nn
    model = nn.Module()
    model.backbone = ViTAdapter(**TINY_ADAPTER, **PREFIX, freeze_vit=True, inject=inject,
                                vit_feature_mode='per_stage', final_norm=True,
                                drop_path_rate=0.1).train()
    model.neck = nn.Conv2d(32, 8, 1)
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='mmvitpe.LayerDecayOptimizerConstructor',
        paramwise_cfg=dict(decay_rate=0.9)))
    backbone, inside_vit, saved_by_vit = model.backbone, [], []
    for part in (backbone.patch_embed, *backbone.blocks, backbone.norm):
        part.register_forward_pre_hook(lambda m, args: inside_vit.append(m))
        part.register_forward_hook(lambda m, args, out: inside_vit.remove(m))

    def pack(tensor):
        if inside_vit:
            saved_by_vit.append(tuple(tensor.shape))
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outs = backbone(torch.randn(2, 3, 64, 96))
    assert bool(saved_by_vit) == inject, saved_by_vit[:5]
    wrapper.backward(sum(model.neck(o).square().mean() for o in outs))
    wrapper.step()
    slots = {n for g in wrapper.optimizer.param_groups for n in g['param_names']}
    vit_parts = ('patch_embed', 'cls_token', 'reg_token', 'pe', 'blocks', 'norm')
    for name, param in model.named_parameters():
        if name.startswith('backbone.') and name.split('.')[1] in vit_parts:
            assert param.grad is None and name not in slots, name
            assert param not in wrapper.optimizer.state, name
        else:
            assert param.grad is not None and param in wrapper.optimizer.state, name


# ---- patch 14 ----------------------------------------------------------------------
DINOV2_TINY = dict(arch='dinov2_small', embed_dim=32, num_heads=2, depth=4, deform_num_heads=2,
                   conv_inplane=8, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])


def test_native_patch14_places_both_grids_by_pixel_position():
    model = ViTAdapter(**DINOV2_TINY, pretrain_size=56).eval()
    calls = []
    for interaction in model.interactions:
        for attn in (interaction.injector.attn, interaction.extractor.attn):
            attn.register_forward_pre_hook(lambda m, args: calls.append(args))
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 100, 130))  # padded to 128 x 160; ViT 10 x 12 tokens
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(100 / s), math.ceil(130 / s)) for s in (4, 8, 16, 32)]
    (_, _, inject_ref, inject_keys), (_, _, extract_ref, extract_keys) = calls[:2]
    assert inject_keys == [(16, 20), (8, 10), (4, 5)] and extract_keys == [(10, 12)]
    # a ViT token's reference point, over the pyramid's 128 x 160 px, is its centre
    vit_centres = torch.stack(torch.meshgrid(torch.arange(10) * 14 + 7.,
                                             torch.arange(12) * 14 + 7., indexing='ij'))
    torch.testing.assert_close(inject_ref[0, :, 0] * torch.tensor([160, 128]),
                               vit_centres.flip(0).reshape(2, -1).T)
    # and a stride-8 token's, over the ViT grid's 140 x 168 px, is its centre too
    c2_centres = torch.stack(torch.meshgrid(torch.arange(16) * 8 + 4.,
                                            torch.arange(20) * 8 + 4., indexing='ij'))
    torch.testing.assert_close(extract_ref[0, :320, 0] * torch.tensor([168, 140]),
                               c2_centres.flip(0).reshape(2, -1).T)


def test_native_patch14_baseline_pads_to_32_only():
    baseline = ViTBaseline(arch='dinov2_small', embed_dim=32, num_heads=2, depth=4,
                           pretrain_size=56).eval()
    grids = []
    baseline.blocks[0].register_forward_hook(lambda m, args, out: grids.append(out.shape[1]))
    with torch.no_grad():  # padded to 128 x 96: a 10 x 7 ViT grid, odd for the max-pool
        outs = baseline(torch.randn(1, 3, 100, 70))
    assert grids == [10 * 7]
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(100 / s), math.ceil(70 / s)) for s in (4, 8, 16, 32)]


def test_vit_map_is_resampled_at_each_level_pixel_centres():
    from mmvitpe.models.backbones.dense import resample_to_level
    # a ViT map whose value is its tokens' pixel x-centre: bilinear resampling
    # must give each level's pixel x-centres (inside the border, where it clamps)
    vit_map = (torch.arange(12) * 14 + 7.).expand(1, 1, 10, 12).contiguous()
    for stride in (4, 8, 16, 32):
        level = resample_to_level(vit_map, 14, stride, (128 // stride, 160 // stride))
        assert level.shape[-2:] == (128 // stride, 160 // stride)
        centres = torch.arange(160 // stride) * stride + stride / 2
        inside = (centres >= 7) & (centres <= 160 - 7)
        torch.testing.assert_close(level[0, 0, 0, inside], centres[inside])


@pytest.mark.parametrize('patch_size', [14, 16])
@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_vit_map_resampling_equals_f_interpolate_in_value_and_gradient(patch_size, dtype, atol):
    """The resampling matrices give F.interpolate's numbers (scale_factor, not the
    size ratio) on an odd, non-square grid, cropped as the levels are."""
    import torch.nn.functional as F
    from mmvitpe.models.backbones.dense import resample_to_level
    grid = (7, 11)
    padded = [g * patch_size // 32 * 32 for g in grid]  # the crop takes a few pixels off
    for stride in (4, 8, 16, 32):
        vit_map = torch.randn(2, 3, *grid, dtype=dtype, requires_grad=True)
        shape = (padded[0] // stride, padded[1] // stride)
        ours = resample_to_level(vit_map, patch_size, stride, shape)
        theirs = F.interpolate(vit_map, scale_factor=patch_size / stride, mode='bilinear',
                               align_corners=False, recompute_scale_factor=False)
        theirs = theirs[..., :shape[0], :shape[1]]
        assert ours.shape == theirs.shape == (2, 3, *shape)
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)
        grad = torch.randn_like(ours)
        torch.testing.assert_close(torch.autograd.grad(ours, vit_map, grad)[0],
                                   torch.autograd.grad(theirs, vit_map, grad)[0],
                                   atol=atol, rtol=0)


def test_patch14_to_16_conversion_resamples_the_kernel_and_keeps_the_table():
    import timm
    from mmvitpe.weights import load_pretrained
    ref = timm.create_model('vit_small_patch14_dinov2', pretrained=False, depth=4, embed_dim=32,
                            num_heads=2, img_size=56, num_classes=0)
    state = ref.state_dict()
    # the original's convert_14to16 + pretrain_size=592: 16-px patches, the 4 x 4 table kept
    model = ViTAdapter(**DINOV2_TINY, patch_size=16, pretrain_size=64)
    report = load_pretrained(model, state)
    # resized: the kernel, and the table only by its class slot (the adapter has no
    # class token): its 4 x 4 grid stays
    assert report.resized == {'patch_embed.proj.weight': '(32, 3, 14, 14) -> (32, 3, 16, 16)',
                              'pe.table.weight': '(1, 17, 32) -> (1, 16, 32)'}
    assert 'patch_embed.proj.weight ((32, 3, 14, 14) -> (32, 3, 16, 16))' in report.table()
    torch.testing.assert_close(model.pe.table.weight.flatten(), state['pos_embed'][0, 1:].flatten())
    # a 14-px patch's embedding equals that of the same patch resized to 16 px
    patch = torch.randn(3, 3, 14, 14)
    resized = F.interpolate(patch, size=(16, 16), mode='bicubic', antialias=True,
                            align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model.patch_embed.proj(resized), ref.patch_embed.proj(patch),
                                   rtol=0, atol=1e-4)
    # natively, nothing is resized
    native = load_pretrained(ViTAdapter(**DINOV2_TINY, pretrain_size=56), state)
    assert list(native.resized) == ['pe.table.weight'] and \
        'patch_embed.proj.weight' in native.loaded
    # a kernel of another width is no patch size: the shape error names it
    state['patch_embed.proj.weight'] = torch.randn(16, 3, 14, 14)
    with pytest.raises(ValueError, match=r'patch_embed.proj.weight.*\(16, 3, 14, 14\) does not '
                                         r'fit \(32, 3, 16, 16\)'):
        load_pretrained(model, state)
    # an own tensor of another shape that its owner would drop or rename is no
    # resize either: a 1000-class head into a 10-class one stays a shape error
    classifier = TimmPEViT(arch=dict(embed_dim=32, depth=1, num_heads=2), num_classes=10)
    wrong_head = dict(classifier.state_dict(), **{'head.weight': torch.randn(1000, 32)})
    with pytest.raises(ValueError, match=r'head.weight.*\(1000, 32\) does not fit \(10, 32\)'):
        load_pretrained(classifier, wrong_head)


PROTOCOL2_FLAGS = dict(class_token=True, freeze_vit=True, inject=False,
                      vit_feature_mode='per_stage', final_norm=True)


@pytest.mark.parametrize('protocol,flags', [(DINOv3Adapter, {}), (ViTAdapter, PROTOCOL2_FLAGS)],
                         ids=['DINOv3Adapter', 'ViTAdapter-flags'])
def test_protocol2_equals_dinov3s_own_adapter(protocol, flags):
    """DINOv3's DINOv3_Adapter on its DinoVisionTransformer (golden, made by
    tools/golden/make_dinov3_adapter_fixtures.py from the official code), its state
    dict loaded strictly: DINOv3Adapter, and ViTAdapter with its four settings, give
    the same maps. The released layout's qkv bias is random in its masked k part,
    which matters under RoPE (0.06 off without the mask)."""
    from helpers import FIXTURES
    from mmvitpe.weights import load_pretrained
    golden = torch.load(f'{FIXTURES}/golden/dinov3_adapter.pt', weights_only=True)
    vit, adapter = golden['config']['vit'], golden['config']['adapter']
    model = protocol(
        arch='dinov3_small', embed_dim=vit['embed_dim'], depth=vit['depth'],
        num_heads=vit['num_heads'], qkv_bias=True, pretrain_size=vit['img_size'],
        num_register_tokens=vit['n_storage_tokens'], **flags,
        interaction_indexes=[[i, i] for i in adapter['interaction_indexes']],
        deform_num_heads=adapter['deform_num_heads'], deform_ratio=adapter['deform_ratio'],
        conv_inplane=adapter['conv_inplane'], cffn_ratio=adapter['cffn_ratio']).eval()
    state = {k.removeprefix('backbone.'): v for k, v in golden['state_dict'].items()}
    report = load_pretrained(model, state)
    assert not report.new and not report.resized
    assert set(report.dropped) == {'mask_token'} | {
        f'blocks.{i}.attn.qkv.bias_mask' for i in range(vit['depth'])}
    with torch.no_grad():
        outs = model(golden['img'])
    for ours, ref in zip(outs, golden['outs'], strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)


def test_dinov3_adapter_is_defined_by_its_settings():
    """DINOv3Adapter's four settings are its definition: repeating them is fine
    (configs inherit them), another value names them and points to ViTAdapter."""
    small = dict(embed_dim=32, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
                 interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
    model = DINOv3Adapter(**small, vit_feature_mode='per_stage', inject=False)
    assert (model.freeze_vit, model.inject, model.vit_feature_mode, model.norm is not None,
            model.num_prefix_tokens) == (True, False, 'per_stage', True, 5)
    for bad in (dict(inject=True), dict(freeze_vit=False), dict(vit_feature_mode='last'),
                dict(final_norm=False), dict(vit_final_norm=False), dict(inject=0)):
        with pytest.raises(ValueError, match=rf'DINOv3Adapter is ViTAdapter with .*got '
                                             rf'\{{\'{next(iter(bad))}\'.*use mmvitpe.ViTAdapter'):
            DINOv3Adapter(**small, **bad)


def test_the_former_read_out_norm_name_still_works_with_a_warning():
    small = dict(embed_dim=32, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
                 interaction_indexes=[[0, 1], [2, 3]])
    with pytest.warns(FutureWarning, match='vit_final_norm is deprecated; its name is now '
                                           'final_norm'):
        model = ViTAdapter(**small, vit_final_norm=True)
    assert model.norm is not None
    with pytest.raises(TypeError, match='give final_norm only'):
        ViTAdapter(**small, vit_final_norm=True, final_norm=True)
    with pytest.raises(TypeError, match="final_norm='True' must be True or False"):
        ViTBaseline(embed_dim=32, depth=4, num_heads=2, final_norm='True')


@pytest.mark.parametrize('scheme', sorted(POS_ENCODINGS.module_dict))
def test_every_scheme_runs_windowed_blocks_with_prefix_tokens(scheme):
    # MPVG is defined without a class token: registers only
    prefix = dict(PREFIX, class_token=False) if scheme == 'MPVG' else PREFIX
    model = ViTBaseline(embed_dim=32, depth=4, num_heads=2, pretrain_size=64, **prefix,
                        pos_embed=dict(type=scheme), final_norm=True, window_size=3,
                        window_block_indexes=[0, 2])
    outs = model(torch.randn(1, 3, 50, 78))  # a 4 x 6 grid: windows padded
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.square().mean() for o in outs).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_an_empty_batch_runs_windowed_blocks_with_prefix_tokens():
    model = ViTBaseline(embed_dim=32, depth=4, num_heads=2, pretrain_size=64, **PREFIX,
                        window_size=3, window_block_indexes=[0, 2]).eval()
    with torch.no_grad():
        empty, one = (model(torch.randn(b, 3, 50, 78)) for b in (0, 1))
    assert [o.shape[1:] for o in empty] == [o.shape[1:] for o in one]
    assert [o.shape[0] for o in empty] == [0] * 4


def test_official_dinov2_layout_converts_14_to_16_into_the_adapter():
    """The official DINOv2 state dict (golden: chunked blocks, class slot, mask token)
    into the DINOv2 configs' adapter (patch 16, the table kept, no class token)."""
    from helpers import FIXTURES
    from mmvitpe.weights import load_pretrained
    golden = torch.load(f'{FIXTURES}/golden/dinov2.pt', weights_only=True)['dinov2']
    config = golden['config']
    model = ViTAdapter(**dict(DINOV2_TINY, embed_dim=config['embed_dim'],
                              num_heads=config['num_heads'], depth=config['depth']),
                       patch_size=16, pretrain_size=config['img_size'] // 14 * 16)
    report = load_pretrained(model, golden['state_dict'])
    assert set(report.resized) == {'patch_embed.proj.weight', 'pe.table.weight'}
    assert set(report.dropped) == {'cls_token', 'mask_token', 'norm.weight', 'norm.bias'}
    torch.testing.assert_close(model.blocks[3].attn.qkv.weight,
                               golden['state_dict']['blocks.1.3.attn.qkv.weight'])
