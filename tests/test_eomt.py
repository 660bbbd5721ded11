"""EoMT on the PE-pluggable trunk: equal to the official code (tue-mps/eomt at a
pinned commit, tools/golden/make_eomt_fixtures.py) with a DINOv2 and a DINOv3
encoder, its annealing, every PE scheme with the queries hidden from it, and its
checks."""
import pytest
import torch

from helpers import FIXTURES
from mmvitpe.models import EoMT
from mmvitpe.models.eomt import mask_probability
from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.weights import load_pretrained

SCHEMES = sorted(POS_ENCODINGS.module_dict)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
ANNEALING = dict(start_iters=[0, 10, 20, 30], end_iters=[10, 20, 30, 40])
# the fixture's encoders: width 48, depth 6, MLP 96, patch 16, class + 4 registers
GOLDEN_TRUNKS = dict(
    dinov2=dict(arch='dinov2_small_reg4', num_heads=2, norm_eps=1e-6),
    dinov3=dict(arch='dinov3_small', num_heads=4, norm_eps=1e-5, qkv_bias=True))


@pytest.fixture(scope='module')
def golden():
    return torch.load(f'{FIXTURES}/golden/eomt.pt', weights_only=True)


def golden_model(golden, family):
    model = EoMT(num_classes=5, num_queries=8, num_blocks=4, mask_annealing=ANNEALING,
                 embed_dim=48, depth=6, mlp_ratio=2., patch_size=16, pretrain_size=(64, 96),
                 layer_scale_init_value=1e-5, **GOLDEN_TRUNKS[family]).eval()
    report = load_pretrained(model, dict(golden[family]['state_dict']))
    # DINOv3's RoPE periods are a function of its base, not a checkpoint tensor
    assert sorted(report.new) == (['pe.periods'] if family == 'dinov3' else [])
    assert sorted(report.dropped) == ['attn_mask_probs', 'encoder.pixel_mean',
                                      'encoder.pixel_std']
    return model


@pytest.mark.parametrize('family', sorted(GOLDEN_TRUNKS))
@pytest.mark.parametrize('run, prob', [('outs', 0.), ('outs_masked', 1.)])
def test_every_blocks_logits_equal_the_official_eomt(golden, family, run, prob):
    """A 64x96 image (4x6 patches): class and mask logits before each of the last 4
    blocks and after the last, with the masks dropped (probability 0) and applied
    (probability 1)."""
    model = golden_model(golden, family)
    model.attn_mask_probs.fill_(prob)
    with torch.no_grad():
        out = model.forward_predictions((golden[family]['img'] - MEAN) / STD,
                                        every_block=True, masked=True)
    ref = golden[family][run]
    for ours, theirs in zip(out.mask_logits + out.class_logits,
                            ref['mask_logits'] + ref['class_logits'], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert out.image_size == out.padded_size == (64, 96)


def test_the_mask_changes_what_the_queries_see(golden):
    """Not vacuous: the masked and unmasked runs differ after the first masked block."""
    ref = golden['dinov2']
    assert torch.equal(ref['outs']['class_logits'][0], ref['outs_masked']['class_logits'][0])
    assert not torch.allclose(ref['outs']['class_logits'][1],
                              ref['outs_masked']['class_logits'][1], atol=1e-3)


def test_an_eomt_checkpoint_loads_through_its_family(golden, tmp_path):
    """A Lightning checkpoint (``network.`` prefix, under ``state_dict``) through
    init_cfg, strictly; the model then equals the official one."""
    state = {f'network.{k}': v for k, v in golden['dinov3']['state_dict'].items()}
    state['criterion.empty_weight'] = torch.tensor([1.] * 5 + [0.1])  # the loss's buffer
    torch.save({'state_dict': state}, tmp_path / 'eomt.ckpt')
    model = EoMT(num_classes=5, num_queries=8, mask_annealing=ANNEALING, embed_dim=48, depth=6,
                 mlp_ratio=2., pretrain_size=(64, 96), **GOLDEN_TRUNKS['dinov3'],
                 init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'eomt.ckpt')))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        out = model((golden['dinov3']['img'] - MEAN) / STD)
    assert len(out.mask_logits) == 1  # eval: the last prediction only, no mask
    torch.testing.assert_close(out.class_logits[0], golden['dinov3']['outs']['class_logits'][-1],
                               rtol=0, atol=1e-4)


def test_annealing_equals_the_official_schedule(golden):
    ref = golden['annealing']
    for s, step in enumerate(ref['steps']):
        ours = [mask_probability(int(step), start, end, ref['poly_power'])
                for start, end in zip(ref['start_steps'], ref['end_steps'])]
        torch.testing.assert_close(torch.tensor(ours), ref['probs'][s].float(), rtol=0,
                                   atol=1e-6)
    model = EoMT(num_classes=3, num_queries=4, embed_dim=32, depth=4, num_heads=2,
                 mask_annealing=dict(start_iters=ref['start_steps'], end_iters=ref['end_steps'],
                                     power=ref['poly_power']))
    model.set_step(int(ref['steps'][5]))
    torch.testing.assert_close(model.attn_mask_probs, ref['probs'][5].float(), rtol=0, atol=1e-6)


def tiny(scheme='LearnedPE', **kw):
    cls = POS_ENCODINGS.module_dict[scheme]
    args = dict(num_classes=3, num_queries=5, num_blocks=2, mask_annealing=dict(
        start_iters=[0, 0], end_iters=[4, 4]), embed_dim=32, depth=4, num_heads=2, patch_size=8,
        pretrain_size=64, class_token=cls.supports_class_token, num_register_tokens=2,
        pos_embed=dict(type=scheme))
    return EoMT(**dict(args, **kw))


@pytest.mark.parametrize('scheme', SCHEMES)
def test_every_scheme_trains_through_eomt_with_the_queries_hidden_from_it(scheme):
    """At an odd size (5x7 patches, patch 8): a masked training step reaches every
    parameter; and the queries are neutral to the scheme, so permuting them permutes
    the predictions (a scheme giving the first token a slot, a rotation or a bias row
    would break this)."""
    torch.manual_seed(0)
    model = tiny(scheme).train()
    model.set_step(2)  # probability 0.5: some masks kept, some dropped
    img = torch.randn(2, 3, 40, 56)
    out = model(img)
    assert len(out.mask_logits) == 3 and out.mask_logits[0].shape == (2, 5, 10, 14)
    assert out.class_logits[-1].shape == (2, 5, 4)
    assert all(torch.isfinite(t).all() for t in out.mask_logits + out.class_logits)
    sum(t.square().mean() for t in out.mask_logits + out.class_logits).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []

    model.eval()
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        before = model(img)
        model.q.weight.copy_(model.q.weight[perm])
        after = model(img)
    torch.testing.assert_close(after.class_logits[0], before.class_logits[0][:, perm],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.mask_logits[0], before.mask_logits[0][:, perm],
                               rtol=1e-4, atol=1e-4)


def test_inference_has_no_mask_and_the_last_prediction_only():
    model = tiny().eval()
    img = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        out = model(img)
        full = model.forward_predictions(img, every_block=True, masked=False)
    assert len(out.mask_logits) == 1
    torch.testing.assert_close(out.mask_logits[0], full.mask_logits[-1])
    assert out.image_size == (40, 56) and out.padded_size == (40, 56)
    with torch.no_grad():
        odd = model(torch.randn(1, 3, 37, 50))
    assert odd.image_size == (37, 50) and odd.padded_size == (40, 56)


def test_the_attention_mask_covers_query_to_patch_entries_only():
    """-inf where a query's mask logit (bilinear at the patch grid) is <= 0, on
    query -> patch entries only; at probability 0.5 about half the queries' masks
    are dropped (EoMT's per-query draw); at 0 there is no mask."""
    from mmvitpe.models.pos_encodings import PEState
    model = tiny(num_queries=400)
    logits = torch.full((1, 400, 8, 8), -1.)
    logits[:, :, :4] = 1.  # the upper half of the image
    mask = model._attn_mask(logits, PEState((4, 4)), 400 + 3 + 16, 1.)
    patches = mask[0, 0, :400, 403:].view(400, 4, 4)
    assert (patches[:, :2] == 0).all() and torch.isinf(patches[:, 2:]).all()
    assert (mask[0, 0, :, :403] == 0).all() and (mask[0, 0, 400:] == 0).all()
    torch.manual_seed(0)
    half = model._attn_mask(logits, PEState((4, 4)), 400 + 3 + 16, .5)
    dropped = (half[0, 0, :400, 403:] == 0).all(-1).float().mean()
    assert 0.4 < dropped < 0.6
    assert model._attn_mask(logits, PEState((4, 4)), 400 + 3 + 16, 0.) is None


def test_bad_settings_are_refused_where_they_enter():
    with pytest.raises(ValueError, match='needs mask_annealing'):
        EoMT(num_classes=3, embed_dim=32, depth=4, num_heads=2)
    with pytest.raises(ValueError, match=r'end_iters=\[4\] needs one entry per block'):
        tiny(mask_annealing=dict(start_iters=[0, 0], end_iters=[4]))
    with pytest.raises(ValueError, match=r'ends \[\(5, 5\)\] must come after'):
        tiny(mask_annealing=dict(start_iters=[0, 5], end_iters=[4, 5]))
    with pytest.raises(ValueError, match='keys'):
        tiny(mask_annealing=dict(start_iters=[0, 0], end_iters=[4, 4], gamma=2))
    with pytest.raises(ValueError, match='mask_annealing is given but masked_attn=False'):
        tiny(masked_attn=False)
    with pytest.raises(TypeError, match='masked_attn=1 must be True or False'):
        tiny(masked_attn=1)
    with pytest.raises(ValueError, match='num_blocks=5 is more than'):
        tiny(num_blocks=5, mask_annealing=None, masked_attn=False)
    with pytest.raises(ValueError, match='needs final_norm=True'):
        tiny(final_norm=False)
    with pytest.raises(ValueError, match=r'blocks \[3\] attend within windows'):
        tiny(window_size=2, window_block_indexes=[0, 3])
    with pytest.raises(TypeError, match='out_indices'):
        tiny(out_indices=[3])
    with pytest.raises(RuntimeError, match='EoMTMaskAnnealingHook'):
        tiny().train()(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='step=-1 must be an int >= 0'):
        tiny().set_step(-1)


def test_two_stage_warmup_poly_equals_the_official_schedule(golden):
    """Heads warm up first while the ViT stays at 0, then the ViT warms up; both
    decay as poly to the end (EoMT's TwoStageWarmupPolySchedule, 2 ViT groups and
    1 head group)."""
    from mmvitpe.engine import TwoStageWarmupPolyLR
    ref = golden['lr_schedule']
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in ref['base_lrs']]
    parts = ['vit'] * ref['num_backbone_params'] + ['head']
    optimizer = torch.optim.AdamW([dict(params=[p], lr=lr, eomt_part=part)
                                   for p, lr, part in zip(params, ref['base_lrs'], parts)])
    scheduler = TwoStageWarmupPolyLR(optimizer, warmup_iters=list(ref['warmup_steps']),
                                     power=ref['poly_power'], end=ref['total_steps'])
    ours = []
    for _ in range(ref['total_steps']):  # the iterations that train (0 .. end - 1)
        ours.append([g['lr'] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    torch.testing.assert_close(torch.tensor(ours, dtype=ref['lrs'].dtype),
                               ref['lrs'][:ref['total_steps']], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="EoMTOptimizerConstructor"):
        TwoStageWarmupPolyLR(torch.optim.SGD(params, lr=1.), warmup_iters=[1, 1], end=10)
    with pytest.raises(ValueError, match=r'end=3 must come after begin \+ both warmups'):
        TwoStageWarmupPolyLR(optimizer, warmup_iters=[2, 2], end=3)
    with pytest.raises(ValueError, match='end is required'):
        TwoStageWarmupPolyLR(optimizer, warmup_iters=[2, 2])


def test_the_optimizer_groups_follow_eomts_layer_decay():
    """Block i at decay ** (L - 1 - i), the stem as block 0, the final norm, the
    queries and heads at the base rate; without decay of the query blocks those
    run at the base rate too; every group tagged for the two-stage schedule."""
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Module()
    model.backbone = tiny('LaPE', num_blocks=2)
    lrs = {}
    for decay_queries in (True, False):
        wrapper = build_optim_wrapper(model, dict(
            optimizer=dict(type='AdamW', lr=1., weight_decay=0.05),
            constructor='mmvitpe.EoMTOptimizerConstructor',
            paramwise_cfg=dict(decay_rate=0.5, decay_query_blocks=decay_queries)))
        names = [n for n, _ in model.named_parameters()]
        assert all(g['weight_decay'] == 0.05 for g in wrapper.param_groups)
        lrs[decay_queries] = {n: (g['lr'], g['eomt_part'])
                              for n, g in zip(names, wrapper.param_groups)}
    decayed = lrs[True]
    assert decayed['backbone.blocks.0.attn.qkv.weight'] == (0.5 ** 3, 'vit')
    assert decayed['backbone.patch_embed.proj.weight'] == (0.5 ** 3, 'vit')
    assert decayed['backbone.blocks.2.mlp.fc1.weight'] == (0.5, 'vit')
    assert decayed['backbone.norm.weight'] == (1., 'vit')
    assert decayed['backbone.q.weight'] == (1., 'head')
    assert decayed['backbone.upscale.0.conv1.weight'] == (1., 'head')
    assert lrs[False]['backbone.blocks.2.mlp.fc1.weight'] == (1., 'vit')
    assert lrs[False]['backbone.blocks.1.mlp.fc1.weight'] == (0.25, 'vit')
    # a PE parameter of block i (LaPE's norm) at block i's rate, its table as block 0
    assert decayed['backbone.pe.norms.1.weight'] == (0.5 ** 2, 'vit')
    assert decayed['backbone.pe.table.weight'] == (0.5 ** 3, 'vit')
    with pytest.raises(ValueError, match='paramwise_cfg keys'):
        build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1.),
                                        constructor='mmvitpe.EoMTOptimizerConstructor',
                                        paramwise_cfg=dict(decay_rate=1., decay_mult=0.)))
    with pytest.raises(ValueError, match=r'paramwise_cfg=None needs decay_rate'):
        build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1.),
                                        constructor='mmvitpe.EoMTOptimizerConstructor'))


def test_inference_compiles_without_graph_breaks_and_training_compiles():
    """EoMT's published speeds use torch.compile: inference is one graph (no mask),
    equal to eager; training compiles around the mask, which stays outside the graph
    as in EoMT's code."""
    model = tiny('RoPEDINOv3').eval()
    img = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        eager = model(img)
        compiled = torch.compile(model, backend='aot_eager', fullgraph=True)(img)
    torch.testing.assert_close(compiled.mask_logits[0], eager.mask_logits[0], rtol=1e-4,
                               atol=1e-5)
    model.train().set_step(2)
    out = torch.compile(model, backend='aot_eager')(img)
    sum(t.square().mean() for t in out.mask_logits).backward()
    assert model.q.weight.grad is not None


def test_dinov2_weights_load_as_eomt_loads_them_through_timm():
    """EoMT builds timm's DINOv2-reg4 at patch 16 and 512 px from the patch-14
    checkpoint (timm's filter resamples the patch kernel and the 37x37 table); the
    DINOv2 configs' trunk, loading the same file strictly, gives the same tokens."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn
    torch.manual_seed(0)
    released = timm.create_model('vit_small_patch14_reg4_dinov2', pretrained=False,
                                 depth=2).state_dict()
    theirs = timm.create_model('vit_small_patch14_reg4_dinov2', pretrained=False, depth=2,
                               img_size=512, patch_size=16, num_classes=0).eval()
    theirs.load_state_dict(checkpoint_filter_fn(dict(released), theirs))
    ours = EoMT(arch='dinov2_small_reg4', depth=2, patch_size=16, pretrain_size=512,
                pos_embed=dict(type='LearnedPE', class_slot=False, antialias=True),
                num_classes=3, num_blocks=1, mask_annealing=dict(start_iters=[0],
                                                                 end_iters=[1])).eval()
    report = load_pretrained(ours, released)
    assert sorted(report.resized) == ['patch_embed.proj.weight', 'pe.table.weight']
    assert {k.split('.')[0] for k in report.new} == {'q', 'class_head', 'mask_head', 'upscale'}
    img = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        x, state = ours.embed(img)
        tokens = ours.finalize(ours.forward_blocks(x, state), state)
        torch.testing.assert_close(tokens, theirs.forward_features(img), rtol=1e-4, atol=1e-4)
