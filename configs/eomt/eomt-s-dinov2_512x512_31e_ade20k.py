# EoMT-S on DINOv2-S/14 with 4 registers, ADE20K semantic: the -l- DINOv2 recipe
# with the small ViT (EoMT publishes no ADE20K number for S).
_base_ = './eomt-l-dinov2_512x512_31e_ade20k.py'
model = dict(backbone=dict(
    arch='dinov2_small_reg4',
    init_cfg=dict(checkpoint='pretrained/vit_small_patch14_reg4_dinov2.lvd142m.safetensors')))
