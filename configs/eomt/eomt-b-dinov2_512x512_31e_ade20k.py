# EoMT-B on DINOv2-B/14 with 4 registers, ADE20K semantic: the -l- DINOv2 recipe
# with the base ViT (EoMT publishes no ADE20K number for B).
_base_ = './eomt-l-dinov2_512x512_31e_ade20k.py'
model = dict(backbone=dict(
    arch='dinov2_base_reg4',
    init_cfg=dict(checkpoint='pretrained/vit_base_patch14_reg4_dinov2.lvd142m.safetensors')))
