"""Equivalence with reference implementations on identical weights.

timm is used live; the paper codebases (SP-ViT, LaPE, rope-vit, MAE) through
golden tensors produced once from their original code by
tools/golden/make_pe_fixtures.py (see its docstring for commits and command).
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
    ours = PEViT(embed_dim=32, depth=2, num_heads=4, patch_size=4, pretrain_size=32,
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
