# ViT-Adapter-S Mask R-CNN 1x. Paper: 44.7 box AP / 39.9 mask AP (COCO val2017).
_base_ = './mask-rcnn_vit-adapter-t_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        preset='small',
        # https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth
        init_cfg=dict(checkpoint='pretrained/deit_small_patch16_224-cd65a155.pth')),
    neck=dict(in_channels=[384, 384, 384, 384]))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
