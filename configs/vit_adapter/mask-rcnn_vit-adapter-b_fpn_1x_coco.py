# ViT-Adapter-B Mask R-CNN 1x. Paper: 47.0 box AP / 41.8 mask AP (COCO val2017).
_base_ = './mask-rcnn_vit-adapter-t_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        preset='base',
        # https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth
        init_cfg=dict(checkpoint='pretrained/deit_base_patch16_224-b5f2ef4d.pth')),
    neck=dict(in_channels=[768, 768, 768, 768]))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
