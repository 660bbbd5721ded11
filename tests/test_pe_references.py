"""Equivalence with reference implementations on identical weights.

timm is used live; the paper codebases (SP-ViT, LaPE, rope-vit, MAE, DINOv3,
EVA-02, CROMA, LookHere) through golden tensors produced once from their
original code by tools/golden/make_pe_fixtures.py (see its docstring for
commits and command).
"""
import os

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from mmvitpe.models import PEViT
from mmvitpe.models.pos_encodings import (LaPE, RoPEAxial, RoPEMixed, SinCosPE, SPSA,
                                          build_pos_encoding)
from mmvitpe.models.pos_encodings.sincos import sincos_2d
from mmvitpe.models.timm_models import TimmPEViT
from mmvitpe.models.vit import Attention, Block

from helpers import FIXTURES, rotate_head_major


def golden(name):
    return torch.load(os.path.join(FIXTURES, 'golden', name), weights_only=True)


def timm_state_to_ours(state):
    return {('pe.table.weight' if k == 'pos_embed' else k): v for k, v in state.items()}


@pytest.mark.parametrize('pool', ['token', 'avg'])
def test_learned_pe_matches_timm_deit_at_any_grid(pool):
    class_token = pool == 'token'
    ref = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4,
                            num_classes=10, class_token=class_token, global_pool=pool,
                            fc_norm=False, dynamic_img_size=True).eval()
    ours = TimmPEViT(arch=dict(embed_dim=32, depth=2, num_heads=4), patch_size=4, img_size=32,
                     class_token=class_token, global_pool=pool, num_classes=10,
                     pos_embed=dict(type='LearnedPE', antialias=True)).eval()
    ours.load_state_dict(timm_state_to_ours(ref.state_dict()), strict=True)
    with torch.no_grad():
        for size in [(32, 32), (40, 24), (24, 24), (44, 52)]:  # up- and down-sampling
            img = torch.randn(2, 3, *size)
            torch.testing.assert_close(ours(img), ref(img), atol=1e-5, rtol=1e-4)


def test_spsa_matches_official_sp_vit():
    g = golden('spvit_sp_sa.pt')
    sd, dim, heads = g['state_dict'], 32, 4
    attn = Attention(dim, heads, qkv_bias=False)
    attn.load_state_dict({'qkv.weight': torch.cat([sd['qk.weight'], sd['v.weight']]),
                          'proj.weight': sd['proj.weight'], 'proj.bias': sd['proj.bias']})
    pe = SPSA(embed_dim=dim, num_heads=heads, depth=1, pretrain_grid=(5, 5))
    pe.priors['0'].load_state_dict({'w1.weight': sd['w1.weight'], 'w1.bias': sd['w1.bias'],
                                    'w2': sd['w2'].view(heads, -1), 'b2': sd['b2']})
    state = pe.prepare((5, 5), torch.device('cpu'), torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(pe.prior(0, (5, 5)), g['prior'])
        torch.testing.assert_close(attn(g['x'], 0, pe, state), g['out'], atol=1e-5, rtol=1e-4)


def test_lape_chain_feeds_each_block_the_norm_of_the_previous_blocks_pe():
    pe = LaPE(embed_dim=32, num_heads=4, depth=3, pretrain_grid=(4, 4))
    with torch.no_grad():
        for p in pe.parameters():
            p.normal_()
        chain = pe.prepare((4, 4), torch.device('cpu'), torch.float32).per_block
    expected = pe.table.resized((4, 4))
    for block in range(3):
        expected = F.layer_norm(expected, (32,), pe.norms[str(block)].weight,
                                pe.norms[str(block)].bias, eps=1e-6)
        torch.testing.assert_close(chain[block], expected)


def test_lape_block_matches_official_lape():
    g = golden('lape_block.pt')
    sd = g['state_dict']
    block = Block(32, 4, index=0, norm_eps=g['ln_eps']).eval()
    pe = LaPE(embed_dim=32, num_heads=4, depth=1, num_prefix_tokens=1, pretrain_grid=(4, 4))
    block.load_state_dict({k: v for k, v in sd.items() if not k.startswith('pe_norm')})
    pe.norms['0'].load_state_dict({k[len('pe_norm.'):]: v for k, v in sd.items()
                                   if k.startswith('pe_norm')})
    pe.table.weight.data.copy_(g['pos'])
    with torch.no_grad():
        state = pe.prepare((4, 4), torch.device('cpu'), torch.float32)
        torch.testing.assert_close(state.per_block[0], g['out_pos'])
        torch.testing.assert_close(block(g['x'], pe, state), g['out_x'], atol=1e-5, rtol=1e-4)


def test_rope_axial_matches_rope_vit():
    g = golden('ropevit.pt')
    pe = RoPEAxial(embed_dim=32, num_heads=2, depth=1)
    state = pe.prepare((3, 5), torch.device('cpu'), torch.float32)  # 3 rows, 5 columns
    q, k = rotate_head_major(pe, g['axial_q_in'], g['axial_k_in'], 0, state)
    torch.testing.assert_close(q, g['axial_q_out'])
    torch.testing.assert_close(k, g['axial_k_out'])


def test_rope_mixed_matches_rope_vit():
    g = golden('ropevit.pt')
    pe = RoPEMixed(embed_dim=32, num_heads=2, depth=1)
    pe.freqs.data.copy_(g['mixed_freqs'][:, None])  # (2, heads, d/2) -> (2, depth=1, heads, d/2)
    state = pe.prepare((3, 5), torch.device('cpu'), torch.float32)
    q, k = rotate_head_major(pe, g['mixed_q_in'], g['mixed_k_in'], 0, state)
    torch.testing.assert_close(q, g['mixed_q_out'], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(k, g['mixed_k_out'], atol=1e-5, rtol=1e-4)


def test_rope_mixed_init_matches_rope_vit_distribution():
    pe = RoPEMixed(embed_dim=64, num_heads=4, depth=3)
    mag = 10.0 ** (-torch.arange(0, 16, 4).float() / 16)
    fx, fy = pe.freqs[0], pe.freqs[1]  # (depth, heads, 8)
    # each (fx, fy) pair is a rotation of (mag, 0) / (0, mag): the norm is mag
    norms = torch.sqrt(fx ** 2 + fy ** 2)
    torch.testing.assert_close(norms, mag.repeat(2).expand_as(norms))


def test_sincos_matches_mae():
    g = golden('mae_sincos.pt')
    torch.testing.assert_close(sincos_2d((4, 4), 32), g['pos'][1:])
    pe = SinCosPE(embed_dim=32, num_heads=4, depth=1, num_prefix_tokens=1)
    state = pe.prepare((4, 4), torch.device('cpu'), torch.float32)
    torch.testing.assert_close(pe.embed(torch.zeros(1, 17, 32), state)[0], g['pos'])


def test_sincos_timm_layout_matches_timm_build_sincos2d_pos_embed():
    from timm.layers import build_sincos2d_pos_embed
    pe = build_pos_encoding(dict(type='SinCosPE', layout='timm'), embed_dim=32, num_heads=4,
                            depth=1)
    table = pe.prepare((3, 5), torch.device('cpu'), torch.float32).tensors['pos'][0]
    torch.testing.assert_close(table, build_sincos2d_pos_embed([3, 5], 32))
    with pytest.raises(ValueError, match="layout='vit'; valid: \\('mae', 'timm'\\)"):
        build_pos_encoding(dict(type='SinCosPE', layout='vit'), embed_dim=32, num_heads=4,
                           depth=1)


def test_sincos_non_square_grid_is_generated_per_axis():
    table = sincos_2d((3, 5), 32).view(3, 5, 32)
    # the first half depends on the column only, the second on the row only
    torch.testing.assert_close(table[0, :, :16], table[2, :, :16])
    torch.testing.assert_close(table[:, 0, 16:], table[:, 4, 16:])
    torch.testing.assert_close(table[2, 4], sincos_2d((5, 5), 32).view(5, 5, 32)[2, 4])


def test_peg_is_timm_twins_posconv_after_block0():
    from timm.models.twins import PosConv
    pe = build_pos_encoding(dict(type='PEG'), embed_dim=32, num_heads=4, depth=2,
                            num_prefix_tokens=1)
    ref = PosConv(32, 32)
    ref.load_state_dict(pe.convs['0'].state_dict())
    x = torch.randn(2, 1 + 12, 32)
    state = pe.prepare((3, 4), x.device, x.dtype)
    out = pe.after_block(x, 0, state)
    torch.testing.assert_close(out[:, 1:], ref(x[:, 1:], (3, 4)))
    torch.testing.assert_close(out[:, :1], x[:, :1])
    # and CPVT's formula itself: tokens + depthwise 3x3 conv of the token map
    conv = pe.convs['0'].proj[0]
    grid_map = x[:, 1:].transpose(1, 2).reshape(2, 32, 3, 4)
    expected = grid_map + F.conv2d(grid_map, conv.weight, conv.bias, padding=1, groups=32)
    torch.testing.assert_close(out[:, 1:], expected.flatten(2).transpose(1, 2))
    assert torch.equal(pe.after_block(x, 1, state), x)
    # Twins init: N(0, sqrt(2 / 9)) weights, zero bias
    wide = build_pos_encoding(dict(type='PEG'), embed_dim=768, num_heads=12, depth=1)
    conv = wide.convs['0'].proj[0]
    assert abs(conv.weight.std().item() - (2 / 9) ** 0.5) < 0.02
    assert not conv.bias.any()


def timm_eva(rope_type, **kw):
    from timm.models.eva import Eva
    return Eva(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0,
               qkv_bias=False, global_pool='token', use_abs_pos_emb=False, use_rot_pos_emb=True,
               rope_type=rope_type, dynamic_img_size=True, **kw).eval()


@pytest.mark.parametrize('scheme,rope_args,eva_args', [
    ('RoPEDINOv3', {}, dict(rope_type='dinov3', rope_temperature=100, rope_rotate_half=True)),
    ('RoPEDINOv3', dict(normalize_coords='max'),
     dict(rope_type='dinov3', rope_temperature=100, rope_rotate_half=True,
          normalize_coords='max')),
    ('RoPEEVA02', {}, dict(rope_type='cat', ref_feat_shape=(8, 8))),
])
def test_rope_schemes_match_timm_eva_at_any_grid(scheme, rope_args, eva_args):
    """timm's live Eva (DINOv3 / EVA-02 RoPE, class token) and ours on its weights."""
    if 'normalize_coords' in eva_args:  # not an Eva argument: set on its rope module
        norm = eva_args.pop('normalize_coords')
        ref = timm_eva(**eva_args)
        ref.rope.normalize_coords = norm
    else:
        ref = timm_eva(**eva_args)
    ours = PEViT(embed_dim=32, depth=2, num_heads=2, patch_size=4, pretrain_size=32,
                 class_token=True, qkv_bias=False, pos_embed=dict(type=scheme, **rope_args)).eval()
    from mmvitpe.weights import load_pretrained
    load_pretrained(ours, ref.state_dict(), strict=True)
    with torch.no_grad():
        for size in [(32, 32), (28, 44), (60, 36)]:
            img = torch.randn(1, 3, *size)
            torch.testing.assert_close(ours.forward_features(img)[0], ref.forward_features(img),
                                       atol=1e-5, rtol=1e-4)


def sin_cos(cos_sin):
    """RoPEDINOv3's (2, N, 1, d/2) cos and sin as DINOv3's (sin, cos), each (N, d)."""
    return cos_sin[1, :, 0].tile(2), cos_sin[0, :, 0].tile(2)


def test_rope_dinov3_matches_official_dinov3():
    g = golden('dinov3_rope.pt')
    pe = build_pos_encoding(dict(type='RoPEDINOv3'), embed_dim=32, num_heads=2, depth=1,
                            num_prefix_tokens=1)
    torch.testing.assert_close(pe.periods, g['periods'])
    state = pe.prepare((3, 5), torch.device('cpu'), torch.float32)
    sin, cos = sin_cos(state.tensors['rope'][:, 1:])
    torch.testing.assert_close(sin, g['sin'])
    torch.testing.assert_close(cos, g['cos'])
    q, k = rotate_head_major(pe, g['q_in'], g['k_in'], 0, state)  # prefix token unrotated
    torch.testing.assert_close(q, g['q_out'])
    torch.testing.assert_close(k, g['k_out'])
    for name, args in [('min', dict(normalize_coords='min')), ('max', dict(normalize_coords='max')),
                       ('minmax', dict(base=None, min_period=0.5, max_period=40.0))]:
        pe = build_pos_encoding(dict(type='RoPEDINOv3', **args), embed_dim=32, num_heads=2,
                                depth=1)
        sin, cos = sin_cos(pe.prepare((4, 2), torch.device('cpu'), torch.float32).tensors['rope'])
        torch.testing.assert_close(sin, g[f'sin_{name}'], msg=name)
        torch.testing.assert_close(cos, g[f'cos_{name}'], msg=name)
    torch.testing.assert_close(pe.periods, g['periods_minmax'])


def test_rope_dinov3_augmentation_is_dinov3s_draws_in_training_only():
    g = golden('dinov3_rope.pt')
    pe = build_pos_encoding(dict(type='RoPEDINOv3', shift_coords=0.3, jitter_coords=1.5,
                                 rescale_coords=2.0), embed_dim=32, num_heads=2, depth=1)

    def drawn():
        return sin_cos(pe.prepare((3, 5), torch.device('cpu'), torch.float32).tensors['rope'])
    torch.manual_seed(11)
    sin, cos = drawn()  # training mode (the default)
    torch.testing.assert_close(sin, g['sin_aug'])
    torch.testing.assert_close(cos, g['cos_aug'])
    assert not torch.allclose(drawn()[0], sin)  # a new draw every forward
    torch.manual_seed(11)
    torch.testing.assert_close(drawn(), (sin, cos))  # reproducible
    pe.eval()
    torch.testing.assert_close(drawn()[0], g['sin'])  # off in eval


def test_rope_eva02_matches_official_eva02_with_rescaled_grids():
    g = golden('eva02_rope.pt')
    pe = build_pos_encoding(dict(type='RoPEEVA02'), embed_dim=32, num_heads=2, depth=1,
                            num_prefix_tokens=1, pretrain_grid=(4, 4))
    for ft in (6, 3):  # larger and smaller than the 4 x 4 pretraining grid
        state = pe.prepare((ft, ft), torch.device('cpu'), torch.float32)
        q, _ = rotate_head_major(pe, g[f'q_in_{ft}'], g[f'q_in_{ft}'], 0, state)
        torch.testing.assert_close(q, g[f'q_out_{ft}'])


def test_alibi_2d_matches_croma():
    g = golden('croma_alibi.pt')
    for heads, side in ((3, 4), (4, 3), (6, 3)):
        pe = build_pos_encoding(dict(type='ALiBi2D'), embed_dim=12 * heads, num_heads=heads,
                                depth=1)
        state = pe.prepare((side, side), torch.device('cpu'), torch.float32)
        bias, gain = pe.logit_terms(0, (side, side), state, 0)
        assert gain is None
        torch.testing.assert_close(bias, g[f'bias_{heads}h_{side}x{side}'][0])


def test_lookhere_matches_official_lookhere():
    g = golden('lookhere_bias.pt')
    for name, args in g['cases'].items():  # the official lh_config of each tensor
        pe = build_pos_encoding(dict(type='LookHere', **args), embed_dim=32, num_heads=4, depth=2)
        state = pe.prepare((3, 4), torch.device('cpu'), torch.float32)
        for block in range(2):
            ours = pe.logit_terms(block, (3, 4), state, 0)[0]
            ref = g[f'bias_{name}'][block].float()
            masked = ref <= -1e38  # official: -bfloat16 max
            assert torch.equal(ours.isneginf(), masked), (name, block)
            # the official bias is stored in bfloat16
            torch.testing.assert_close(ours[~masked], ref[~masked], rtol=2 ** -8, atol=0,
                                       msg=f'{name} block {block}')
