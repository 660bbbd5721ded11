"""Arch presets of the foundation ViTs: DINOv2, DINOv3 and EVA-02.

``PEViT(arch='dinov2_small')`` (and ``ViTAdapter(arch=...)``, ``ViTBaseline(arch=...)``)
builds the layout of the released model; every value is overridden by the
argument of the same name (``depth=2``, ``pos_embed=...``). Values are those of
timm 1.0.31 (``vision_transformer.py`` ``vit_*_patch14[_reg4]_dinov2``,
``eva.py`` ``vit_*_patch16_dinov3`` and ``eva02_*_patch14_224``), whose state
dicts load unchanged; ``pretrain_size`` is the size the PE table / RoPE
reference grid was trained at.

PEs: DINOv2 learns a 37x37 table with a class slot, its registers get none
(with registers timm folds the slot into the class token: ``class_slot=False``
here too); tables are resized as timm's ``resample_abs_pos_embed`` does
(bicubic, antialiased), not with the official code's 0.1 offset on the scale
factor. DINOv3 uses only its RoPE; EVA-02 a table plus RoPE rescaled to its
16x16 pretraining grid.

MLPs (see ``block.MLP_LAYERS``): DINOv2-g and EVA-02 T/S use the packed SwiGLU,
DINOv3 S+/H+/7B the split one with its hidden width aligned to 8 (7B: 64), EVA-02 B/L the
split one with a LayerNorm on the hidden features (sub-LN).
"""
from typing import Dict

_DINOV2 = dict(patch_size=14, pretrain_size=518, class_token=True, layer_scale_init_value=1e-5,
               pos_embed=dict(type='LearnedPE', antialias=True))
_DINOV2_REG4 = dict(_DINOV2, num_register_tokens=4,
                    pos_embed=dict(type='LearnedPE', class_slot=False, antialias=True))
_DINOV2_GIANT = dict(embed_dim=1536, depth=40, num_heads=24, mlp_layer='swiglu_packed',
                     mlp_ratio=8 / 3)  # 4096 gated features, as timm's 2.66667 * 2 packed
_DINOV3 = dict(patch_size=16, pretrain_size=256, class_token=True, num_register_tokens=4,
               qkv_bias=False, layer_scale_init_value=1e-5, norm_eps=1e-5,
               pos_embed=dict(type='RoPEDINOv3', base=100.))
_EVA02 = dict(patch_size=14, pretrain_size=224, class_token=True, mlp_ratio=4 * 2 / 3,
              mlp_layer='swiglu_packed', final_norm=False, pos_embed=dict(type='EVA02PE'))
_EVA02_SUBLN = dict(_EVA02, mlp_layer='swiglu', mlp_norm=True)

FOUNDATION_ARCHS: Dict[str, dict] = {
    'dinov2_small': dict(_DINOV2, embed_dim=384, depth=12, num_heads=6),
    'dinov2_base': dict(_DINOV2, embed_dim=768, depth=12, num_heads=12),
    'dinov2_large': dict(_DINOV2, embed_dim=1024, depth=24, num_heads=16),
    'dinov2_giant': dict(_DINOV2, **_DINOV2_GIANT),
    'dinov2_small_reg4': dict(_DINOV2_REG4, embed_dim=384, depth=12, num_heads=6),
    'dinov2_base_reg4': dict(_DINOV2_REG4, embed_dim=768, depth=12, num_heads=12),
    'dinov2_large_reg4': dict(_DINOV2_REG4, embed_dim=1024, depth=24, num_heads=16),
    'dinov2_giant_reg4': dict(_DINOV2_REG4, **_DINOV2_GIANT),
    'dinov3_small': dict(_DINOV3, embed_dim=384, depth=12, num_heads=6),
    'dinov3_small_plus': dict(_DINOV3, embed_dim=384, depth=12, num_heads=6,
                              mlp_layer='swiglu', mlp_align=8),
    'dinov3_base': dict(_DINOV3, embed_dim=768, depth=12, num_heads=12),
    'dinov3_large': dict(_DINOV3, embed_dim=1024, depth=24, num_heads=16),
    'dinov3_huge_plus': dict(_DINOV3, embed_dim=1280, depth=32, num_heads=20,
                             mlp_layer='swiglu', mlp_align=8),
    # ViT-7B/16 (timm vit_7b_patch16_dinov3, the hub's facebook/dinov3-vit7b16-*):
    # 6.7B parameters, SwiGLU of 8192 features
    'dinov3_7b': dict(_DINOV3, embed_dim=4096, depth=40, num_heads=32, mlp_ratio=2.,
                      mlp_layer='swiglu', mlp_align=64),
    'eva02_tiny': dict(_EVA02, embed_dim=192, depth=12, num_heads=3),
    'eva02_small': dict(_EVA02, embed_dim=384, depth=12, num_heads=6),
    'eva02_base': dict(_EVA02_SUBLN, embed_dim=768, depth=12, num_heads=12),
    'eva02_large': dict(_EVA02_SUBLN, embed_dim=1024, depth=24, num_heads=16),
}
