# STA over DINOv3-S/16 (DEIMv2-S's backbone: taps 5, 8, 11, stem width 16) with its
# RoPE and its class and 4 storage tokens, in Mask R-CNN 3x (the -t- config's recipe).
# DEIMv2-S reaches 50.9 COCO AP as a DETR-style detector; no Mask R-CNN number exists.
_base_ = './mask-rcnn_sta-t_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth (see configs/foundation)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')),
    neck=dict(in_channels=[384, 384, 384, 384]))
