# ViT-Adapter-S Mask R-CNN 3x + multi-scale training. Paper: 48.2 box AP / 42.8 mask AP (COCO val2017).
_base_ = './mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        preset='small',
        # https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth
        init_cfg=dict(checkpoint='pretrained/deit_small_patch16_224-cd65a155.pth')),
    neck=dict(in_channels=[384, 384, 384, 384]))
