"""Composite PE schemes (compose.py, presets.py) and prefix (class/register) tokens.

The grid / autocast / checkpointing / memo tests of test_pos_encodings.py run
every registered scheme, so they cover the presets too (with 0, 1 and 1+4
prefix tokens); this file checks what is particular to composites.
"""
import pytest
import timm
import torch

from mmvitpe.engine import LayerDecayOptimizerConstructor
from mmvitpe.models import PEViT
from mmvitpe.models.pos_encodings import build_pos_encoding
from mmvitpe.weights.transfer import IncompatibleCheckpointError, load_pretrained, remap

from helpers import perturbed, rotate_head_major

CPU = torch.device('cpu')


def vit(pos_embed, **kw):
    cfg = dict(embed_dim=32, depth=3, num_heads=4, patch_size=4, pretrain_size=56,
               pos_embed=pos_embed)
    cfg.update(kw)
    return PEViT(**cfg)


def pe(cfg, **kw):
    context = dict(embed_dim=32, num_heads=4, depth=3, pretrain_grid=(5, 5))
    context.update(kw)
    return build_pos_encoding(cfg, **context)


def randomise(module, std=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def test_spellings_and_preset_build_the_same_documented_keys():
    members = [dict(type='LearnedPE', class_slot=False, antialias=True),
               dict(type='RoPEMixed', theta=10.)]
    as_list = vit(members, class_token=True)
    as_dict = vit(dict(type='Compose', schemes=members), class_token=True)
    preset = vit(dict(type='RoPEMixedAPE'), class_token=True)
    shapes = [{k: v.shape for k, v in m.state_dict().items() if k.startswith('pe.')}
              for m in (as_list, as_dict, preset)]
    assert shapes[0] == shapes[1] == shapes[2]
    assert set(shapes[0]) == {'pe.members.0.table.weight', 'pe.members.1.freqs'}
    assert shapes[0]['pe.members.0.table.weight'] == (1, 14 * 14, 32)  # no class slot
    # a preset nested in a list is flattened
    nested = vit([dict(type='BEiTPE'), dict(type='PEG')])
    assert [type(m).__name__ for m in nested.pe.members] == ['LearnedPE', 'RelPosBias', 'PEG']


def test_sites_chain_in_list_order():
    model = vit([dict(type='LearnedPE'), dict(type='PEG', blocks=[1]),
                 dict(type='FactorizedPE')]).eval()
    randomise(model.pe)
    img = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        x, state = model.embed(img)
        patches = model.patch_embed(img).flatten(1, 2)
        learned, _, factorized = model.pe.members
        torch.testing.assert_close(
            x, patches + learned.table.resized((5, 7)) + factorized._table((5, 7)))
        y = model.blocks[1](model.blocks[0](x, model.pe, state), model.pe, state)
        torch.testing.assert_close(model.pe.after_block(y, 1, state),
                                   model.pe.members[1].convs['1'](y, (5, 7)))


def test_logit_terms_biases_add_and_gains_multiply():
    members = [dict(type='RelPosBias'), dict(type='SPSA', hidden=8),
               dict(type='RelPosBias', blocks=[1]), dict(type='SPSA', blocks=[1])]
    comp = pe(members, num_prefix_tokens=1)
    randomise(comp)
    state = comp.prepare((4, 6), CPU, torch.float32)
    bias, gain = comp.logit_terms(1, (4, 6), state, 1)
    terms = [m.logit_terms(1, (4, 6), s, 1) for m, s in zip(comp.members, state.members)]
    torch.testing.assert_close(bias, terms[0][0] + terms[2][0])
    torch.testing.assert_close(gain, terms[1][1] * terms[3][1])
    assert bias.shape == gain.shape == (4, 25, 25)
    bias0, gain0 = comp.logit_terms(0, (4, 6), state, 1)  # block 0: one term of each kind
    torch.testing.assert_close(bias0, comp.members[0].logit_terms(0, (4, 6), state.members[0], 1)[0])
    torch.testing.assert_close(gain0, comp.members[1].logit_terms(0, (4, 6), state.members[1], 1)[1])


def test_rotations_chain():
    comp = pe([dict(type='RoPEAxial', blocks=[0]), dict(type='RoPEMixed')], num_heads=2)
    state = comp.prepare((3, 4), CPU, torch.float32)
    q, k = torch.randn(2, 1, 2, 12, 16).unbind(0)
    axial, mixed = comp.members
    rq, rk = rotate_head_major(comp, q, k, 0, state)
    aq, ak = rotate_head_major(axial, q, k, 0, state.members[0])
    mq, mk = rotate_head_major(mixed, aq, ak, 0, state.members[1])
    torch.testing.assert_close(rq, mq)
    torch.testing.assert_close(rk, mk)
    rq1, _ = rotate_head_major(comp, q, k, 1, state)  # block 1: mixed only
    torch.testing.assert_close(rq1, rotate_head_major(mixed, q, k, 1, state.members[1])[0])


@pytest.mark.parametrize('cfg,error,match', [
    ([], ValueError, 'non-empty list'),
    ([dict(type='MPVG'), dict(type='MPVG', blocks=[2])], ValueError,
     r'members 0 \(MPVG\) and 1 \(MPVG\) both add a term at the final norm'),
    ([dict(type='LearnedPE'), dict(type='PEG'), dict(type='LearnedPE')], ValueError,
     r'member 2 .* repeats member 0 .*: the same arguments once defaults are filled in'),
    # members that differ only by a default spelt out: q/k rotated twice, one PEG twice
    ([dict(type='RoPEAxial'), dict(type='RoPEAxial', theta=100.0)], ValueError,
     r"member 1 \(\{'type': 'RoPEAxial', 'theta': 100.0\}\) repeats member 0"),
    ([dict(type='PEG'), dict(type='PEG', blocks=(0,))], ValueError,
     r'member 1 .* repeats member 0 .*: the same arguments once defaults are filled in'),
    ([dict(type='RoPEAxial'), dict(type='Sinus')], ValueError,
     r"member 1 \(Sinus\): unknown positional encoding type 'Sinus'"),
    ([dict(type='PEG', bogus=1)], TypeError, r'member 0 \(PEG\).*bogus'),
    (dict(type='BEiTPE', table_grid=(3, 3)), TypeError,
     r"BEiTPE: unknown argument\(s\) \['table_grid'\].*RelPosBias=dict"),
    (dict(type='BEiTPE', RelPosBias=3), TypeError, 'member arguments must be dicts'),
])
def test_nonsense_is_rejected_with_the_reason(cfg, error, match):
    with pytest.raises(error, match=match):
        vit(cfg)


def test_mpvg_member_with_a_class_token_is_rejected_naming_the_member():
    with pytest.raises(ValueError, match=r'member 1 \(MPVG\): MPVG is defined with global '
                                         'average pooling'):
        vit([dict(type='RoPEAxial'), dict(type='MPVG')], class_token=True)
    # class-level facts follow the members
    assert vit([dict(type='RoPEAxial'), dict(type='MPVG')]).pe.acts_at_final_norm
    with pytest.raises(ValueError, match='adds a term at the final norm'):
        vit([dict(type='RoPEAxial'), dict(type='MPVG')], final_norm=False)


def test_preset_member_arguments_are_overridden_under_the_type_name():
    model = vit(dict(type='SPViTPE', SPSA=dict(hidden=8, blocks=[0])), depth=4)
    learned, spsa, peg = model.pe.members
    assert spsa.blocks == [0] and spsa.hidden == 8
    assert peg.blocks == [0, 1, 2, 3] and learned.table.num_slots == 0
    assert vit(dict(type='SPViTPE'), depth=4).pe.members[1].blocks == [0, 1]


# ---- equivalence with timm's composites --------------------------------------------------
@pytest.mark.parametrize('name,preset', [('vit_small_patch16_rope_mixed_ape_224', 'RoPEMixedAPE'),
                                         ('vit_small_patch16_rope_ape_224', 'RoPEAxialAPE')])
def test_rope_ape_presets_equal_timm(name, preset):
    ref = perturbed(timm.create_model(name, pretrained=False, depth=2, embed_dim=64,
                                       num_heads=4, img_size=64, num_classes=0,
                                       dynamic_img_size=True)).eval()
    ours = PEViT(embed_dim=64, depth=2, num_heads=4, pretrain_size=64, class_token=True,
                 layer_scale_init_value=1e-5, pos_embed=dict(type=preset)).eval()
    report = load_pretrained(ours, ref.state_dict())  # timm's Eva keys, strict
    assert report.loaded and not report.new and not report.dropped
    for size in ((64, 64), (48, 80)):  # the pretraining grid and another one
        img = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(ours.forward_features(img)[0], ref.forward_features(img),
                                       rtol=0, atol=1e-5)


def test_eva02_preset_equals_timm_eva02_pe():
    # timm's eva02_tiny with a GELU MLP: SwiGLU is the backbone's, not the PE's
    ref = perturbed(timm.create_model('eva02_tiny_patch14_224', pretrained=False, depth=2,
                                       embed_dim=64, num_heads=2, img_size=112, num_classes=0,
                                       swiglu_mlp=False, mlp_ratio=4., ref_feat_shape=(8, 8),
                                       global_pool='token', dynamic_img_size=True)).eval()
    ours = PEViT(embed_dim=64, depth=2, num_heads=2, patch_size=14, pretrain_size=112,
                 class_token=True, pos_embed=dict(type='EVA02PE')).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.loaded and not report.new and not report.dropped
    for size in ((112, 112), (84, 140)):
        img = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(ours.forward_features(img)[0], ref.forward_features(img),
                                       rtol=0, atol=1e-5)


def test_beit_preset_equals_timm_beit_with_absolute_and_relative_pe():
    from timm.models.beit import Beit
    ref = perturbed(Beit(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                          num_classes=0, global_pool='token', use_abs_pos_emb=True,
                          use_rel_pos_bias=True, init_values=0.1)).eval()
    ours = PEViT(embed_dim=64, depth=2, num_heads=4, pretrain_size=64, class_token=True,
                 layer_scale_init_value=0.1, pos_embed=dict(type='BEiTPE')).eval()
    report = load_pretrained(ours, ref.state_dict())
    # BEiT's (7*7 + 3, heads) tables split into the patch table and the class entries
    assert sorted(report.resized) == ['pe.members.1.class_tables.0', 'pe.members.1.class_tables.1',
                                      'pe.members.1.tables.0', 'pe.members.1.tables.1']
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(img)[0], ref.forward_features(img),
                                   rtol=0, atol=1e-5)


# ---- weights -----------------------------------------------------------------------
def test_foreign_tensors_go_to_the_member_that_claims_them():
    model = vit(dict(type='SPViTPE'), depth=4)
    state = {'pos_embed': torch.randn(1, 197, 32),
             'blocks.3.pos_block.proj.0.weight': torch.randn(32, 1, 3, 3),  # SP-ViT's PosCNN
             'blocks.1.attn.w2': torch.randn(32, 1), 'freqs': torch.randn(2, 4, 64)}
    mapped, report = remap(state, model)
    assert report.loaded == ['pe.members.2.convs.3.proj.0.weight']
    # class slot dropped and the table resized; SP-ViT's (D, 1) w2 as (heads, hidden)
    assert list(report.resized) == ['pe.members.0.table.weight', 'pe.members.1.priors.1.w2']
    assert report.dropped == {'freqs': 'PE tensor that no member of SPViTPE(LearnedPE, SPSA, '
                                       'PEG) uses (layout of RoPEMixed)'}
    torch.testing.assert_close(mapped['pe.members.2.convs.3.proj.0.weight'],
                               state['blocks.3.pos_block.proj.0.weight'])


def test_a_tensor_two_members_claim_is_an_error_naming_both():
    model = vit([dict(type='LearnedPE'), dict(type='LaPE')])
    with pytest.raises(IncompatibleCheckpointError,
                       match=r'pos_embed: claimed by pos_embed members 0 \(LearnedPE\) and 1 '
                             r'\(LaPE\)'):
        remap({'pos_embed': torch.randn(1, 196, 32)}, model)
    with pytest.raises(IncompatibleCheckpointError, match=r'pe.table.weight: claimed by.*'
                                                          r'0 \(LearnedPE\) and 1 \(LaPE\)'):
        remap(vit(dict(type='LearnedPE')).state_dict(), model)


def test_single_scheme_checkpoints_load_into_composites_and_back():
    single, composite = vit(dict(type='RelPosBias')), vit(dict(type='BEiTPE'))
    randomise(single.pe)
    report = load_pretrained(composite, single.state_dict())
    assert list(report.new) == ['pe.members.0.table.weight'] and not report.dropped
    torch.testing.assert_close(composite.pe.members[1].tables['2'], single.pe.tables['2'])
    # back, through load_state_dict as load_from / resume do
    randomise(composite.pe)
    plain = vit(dict(type='RelPosBias'))
    plain.load_state_dict(composite.state_dict())
    torch.testing.assert_close(plain.pe.tables['1'], composite.pe.members[1].tables['1'])
    _, report = remap(composite.state_dict(), plain)
    assert report.dropped == {'pe.members.0.table.weight': 'PE tensor of a composite member '
                                                          'that RelPosBias does not have'}
    # a composite's keys load into another composite by name, whatever the order
    swapped = vit([dict(type='RelPosBias'), dict(type='LearnedPE')])
    load_pretrained(swapped, composite.state_dict())
    torch.testing.assert_close(swapped.pe.members[1].table.weight,
                               composite.pe.members[0].table.weight)


def test_layer_decay_and_weight_decay_per_member():
    model = vit([dict(type='RelPosBias', blocks=[2]), dict(type='MPVG')])
    assert model.get_layer_depth('pe.members.0.tables.2') == (3, 5)       # block 2
    assert model.get_layer_depth('pe.members.1.norms.1.weight') == (2, 5)  # block 1
    assert model.get_layer_depth('pe.members.1.table.weight') == (0, 5)    # shared table
    assert model.get_layer_depth('pe.members.1.last_norm_layer.bias') == (4, 5)  # final norm
    groups = []
    LayerDecayOptimizerConstructor(dict(optimizer=dict(type='SGD', lr=1.0, weight_decay=0.1)),
                                   dict(decay_rate=0.5)).add_params(groups, model)
    scale = {n: g['lr_scale'] for g in groups for n in g['param_names']}
    decay = {n: g['weight_decay'] for g in groups for n in g['param_names']}
    assert scale['pe.members.0.tables.2'] == 0.5 and scale['pe.members.1.table.weight'] == 0.5 ** 4
    assert scale['pe.members.1.last_norm_layer.weight'] == 1.0
    assert decay['pe.members.0.tables.2'] == 0 and decay['blocks.0.attn.qkv.weight'] == 0.1


# ---- prefix tokens -------------------------------------------------------------------
def test_register_tokens_follow_the_class_token_and_get_no_pe():
    model = vit(dict(type='LearnedPE'), class_token=True, num_register_tokens=4)
    assert model.pe.table.weight.shape == (1, 1 + 14 * 14, 32)  # a class slot, none for registers
    img = torch.randn(2, 3, 28, 44)
    x, state = model.embed(img)
    assert x.shape == (2, 1 + 4 + 77, 32)
    pos = state.tensors['pos']
    torch.testing.assert_close(x[:, 0], (model.cls_token + pos[:, :1])[0].expand(2, -1))
    torch.testing.assert_close(x[:, 1:5], model.reg_token.expand(2, -1, -1))
    torch.testing.assert_close(x[:, 5:], model.patch_embed(img).flatten(1, 2) + pos[:, 1:])
    tokens = model.forward_features(img)[0]
    # the read-out: the patch tokens as a map, prefix tokens dropped
    torch.testing.assert_close(model(img)[0], tokens[:, 5:].transpose(1, 2).reshape(2, 32, 7, 11))


@pytest.mark.parametrize('scheme', ['RoPEMixed', 'RelPosBias', 'SPSA', 'BEiTPE'])
def test_prefix_tokens_are_unrotated_and_padded(scheme):
    comp = pe(dict(type=scheme), num_prefix_tokens=5, num_register_tokens=4, num_heads=2)
    randomise(comp)
    state = comp.prepare((3, 4), CPU, torch.float32)
    if scheme == 'RoPEMixed':
        q, k = torch.randn(2, 1, 2, 17, 16).unbind(0)
        rq, _ = rotate_head_major(comp, q, k, 1, state)
        torch.testing.assert_close(rq[:, :, :5], q[:, :, :5], rtol=0, atol=0)
        return
    bias, gain = comp.logit_terms(1, (3, 4), state, 5)
    term, neutral = (bias, 0.) if bias is not None else (gain, 1.)
    registers = term[:, 1:5]
    assert (registers == neutral).all() and (term[:, :, 1:5] == neutral).all()
    class_row = term[:, 0, 5:]
    assert (class_row == neutral).all() != (scheme == 'BEiTPE')  # BEiT's class entries


def test_register_tokens_equal_timm_vit_reg_tokens():
    ref = perturbed(timm.create_model('vit_small_patch16_224', pretrained=False, depth=2,
                                       embed_dim=64, num_heads=4, img_size=64, num_classes=0,
                                       reg_tokens=4, no_embed_class=True, init_values=0.1)).eval()
    ours = PEViT(embed_dim=64, depth=2, num_heads=4, pretrain_size=64, class_token=True,
                 num_register_tokens=4, layer_scale_init_value=0.1,
                 pos_embed=dict(type='LearnedPE', class_slot=False)).eval()
    load_pretrained(ours, ref.state_dict())
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(img)[0], ref.forward_features(img),
                                   rtol=0, atol=1e-5)


def test_register_token_keys_load_or_drop():
    with_regs = vit(dict(type='NoPE'), class_token=True, num_register_tokens=2)
    dinov2 = {'register_tokens': torch.randn(1, 2, 32)}
    mapped, _ = remap(dinov2, with_regs)
    torch.testing.assert_close(mapped['reg_token'], dinov2['register_tokens'])
    _, report = remap(dinov2, vit(dict(type='NoPE')))
    assert report.dropped == {'register_tokens': 'this model has no register tokens'}
    assert with_regs.get_layer_depth('reg_token') == (0, 5)
    assert 'reg_token' in with_regs.no_weight_decay()


def test_register_token_errors():
    with pytest.raises(ValueError, match='num_register_tokens=-1'):
        vit(dict(type='NoPE'), num_register_tokens=-1)
    # MPVG pools patches only: registers are fine, a class token is not
    assert vit(dict(type='MPVG'), num_register_tokens=2)(torch.randn(1, 3, 20, 20))[0].shape == (1, 32, 5, 5)
