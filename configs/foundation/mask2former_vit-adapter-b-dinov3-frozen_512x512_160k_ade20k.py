# Mask2Former on ViT-Adapter-B + DINOv3-B/16 in protocol 2 (see the -s- config).
_base_ = './mask2former_vit-adapter-s-dinov3-frozen_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='base', arch='dinov3_base',
        init_cfg=dict(checkpoint='pretrained/dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth')),
    decode_head=dict(in_channels=[768, 768, 768, 768]))
