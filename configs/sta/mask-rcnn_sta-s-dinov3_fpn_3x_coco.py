# STA over DINOv3-S/16 as DEIMv2-L's backbone (taps 5, 8, 11, stem width 32, width 224)
# with its RoPE and its class and 4 storage tokens, in Mask R-CNN 3x (the -t- config's recipe).
# DEIMv2-L reaches 56.0 COCO AP as a DETR-style detector; no Mask R-CNN number exists.
_base_ = './mask-rcnn_sta-t_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
        conv_inplane=32, out_channels=224,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth (see configs/foundation)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')),
    neck=dict(in_channels=[224, 224, 224, 224]))
