"""Flags are True or False: a string ('False' is truthy) or a number (1) is refused
where it enters, naming the flag (mmvitpe/utils/validation.py ``check_bool``)."""
import numpy as np
import pytest
import timm

from helpers import tiny_adapter, tiny_vit, tiny_vit_with_pe
from mmvitpe.models import ViTBaseline
from mmvitpe.models.timm_models import TEST_ARCH, TimmPEViT


def baseline(**kw):
    return ViTBaseline(**{**dict(embed_dim=32, depth=4, num_heads=4, pretrain_size=64), **kw})


def timm_vit(**kw):
    return TimmPEViT(arch=TEST_ARCH, img_size=64, num_classes=0, **kw)


def scheme(name, **args):
    return lambda **flag: tiny_vit_with_pe(name, **args, **flag)


def preset_member(preset, member):
    return lambda **flag: tiny_vit_with_pe(preset, **{member: flag})


def init_cfg_strict(strict):
    # the flag is read before the (absent) file
    tiny_vit(init_cfg=dict(type='Pretrained', checkpoint='absent.pth', strict=strict)
             ).init_weights()


def timm_call(method, **fixed):
    def call(**flag):
        model = timm_vit()
        getattr(model, method)(**fixed, **flag)
    return call


FLAGS = [
    # (component, flag, builder taking flag=value)
    ('PEViT', 'class_token', tiny_vit),
    ('PEViT', 'qkv_bias', tiny_vit),
    ('PEViT', 'with_cp', tiny_vit),
    ('PEViT', 'final_norm', tiny_vit),
    ('PEViT', 'mlp_norm', tiny_vit),
    ('ViTAdapter', 'freeze_vit', tiny_adapter),
    ('ViTAdapter', 'inject', tiny_adapter),
    ('ViTAdapter', 'final_norm', tiny_adapter),
    ('ViTAdapter', 'with_cffn', tiny_adapter),
    ('ViTAdapter', 'use_extra_extractor', tiny_adapter),
    ('ViTAdapter', 'with_cp', tiny_adapter),
    ('ViTBaseline', 'final_norm', baseline),
    ('ViTBaseline', 'with_cp', baseline),
    ('LearnedPE', 'antialias', scheme('LearnedPE')),
    ('LearnedPE', 'class_slot', scheme('LearnedPE')),
    ('LaPE', 'antialias', scheme('LaPE')),
    ('PVG', 'class_slot', scheme('PVG')),
    ('MPVG', 'class_slot', scheme('MPVG')),
    ('RelPosBias', 'class_entries', scheme('RelPosBias')),
    ('RoPEEVA02', 'rescale', scheme('RoPEEVA02')),
    ('BEiTPE', 'class_entries', preset_member('BEiTPE', 'RelPosBias')),
    ('EVA02PE', 'rescale', preset_member('EVA02PE', 'RoPEEVA02')),
    ('RoPEAxialAPE', 'antialias', preset_member('RoPEAxialAPE', 'LearnedPE')),
    ('init_cfg', 'strict', lambda strict: init_cfg_strict(strict)),
    ('TimmPEViT', 'class_token', timm_vit),
    ('TimmPEViT', 'enable', timm_call('set_grad_checkpointing')),
    ('TimmPEViT', 'prune_norm', timm_call('prune_intermediate_layers')),
    ('TimmPEViT', 'norm', lambda norm: timm_vit().forward_intermediates(None, norm=norm)),
    ('timm', 'pretrained',
     lambda pretrained: timm.create_model('test_pevit_learnedpe', pretrained=pretrained)),
]


@pytest.mark.parametrize('value', ['False', 1], ids=['str', 'int'])
@pytest.mark.parametrize('component,flag,build', FLAGS,
                         ids=[f'{c}-{f}' for c, f, _ in FLAGS])
def test_a_flag_that_is_not_a_bool_is_refused_naming_it(component, flag, build, value):
    with pytest.raises(TypeError, match=rf'{flag}={value!r} must be True or False, got '
                                        rf'{type(value).__name__}'):
        build(**{flag: value})


def test_mlp_align_is_a_count_not_a_flag():
    with pytest.raises(TypeError, match=r'PEViT: mlp_align=True must be an int, got bool'):
        tiny_vit(mlp_layer='swiglu', mlp_align=True)


def test_freeze_vit_given_as_the_string_false_no_longer_freezes_the_vit():
    with pytest.raises(TypeError, match=r"ViTAdapter: freeze_vit='False' must be True or False"):
        tiny_adapter(freeze_vit='False')
    # numpy's bools are bools: their value counts, not their truthiness as an object
    assert all(p.requires_grad for p in tiny_adapter(freeze_vit=np.bool_(False)).parameters())
    frozen = tiny_adapter(freeze_vit=np.bool_(True))
    assert not any(p.requires_grad for p in frozen.blocks.parameters())
    assert frozen.freeze_vit is True
