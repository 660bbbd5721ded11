# ViT-Adapter-B Mask R-CNN 3x + multi-scale training. Paper: 49.6 box AP / 43.6 mask AP (COCO val2017).
_base_ = './mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        preset='base',
        # https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth
        init_cfg=dict(checkpoint='pretrained/deit_base_patch16_224-b5f2ef4d.pth')),
    neck=dict(in_channels=[768, 768, 768, 768]))
