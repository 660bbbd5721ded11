# EoMT-S on DINOv3-S/16, ADE20K semantic: the -l- recipe with the small ViT (EoMT
# publishes no ADE20K number for S).
_base_ = './eomt-l-dinov3_512x512_16e_ade20k.py'
model = dict(backbone=dict(
    arch='dinov3_small',
    init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')))
