# EoMT-B on DINOv3-B/16, ADE20K semantic: the -l- recipe with the base ViT (EoMT
# publishes no ADE20K number for B).
_base_ = './eomt-l-dinov3_512x512_16e_ade20k.py'
model = dict(backbone=dict(
    arch='dinov3_base',
    init_cfg=dict(checkpoint='pretrained/dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth')))
