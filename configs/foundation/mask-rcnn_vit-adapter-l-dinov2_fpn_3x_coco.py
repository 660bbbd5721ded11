# ViT-Adapter-L + DINOv2-L, Mask R-CNN 3x + multi-scale training, as the original's
# dinov2 branch (see the -s- config): 24 blocks, global attention in every sixth,
# layer decay 0.65. Published: 55.3 box AP / 49.0 mask AP (COCO val2017;
# AugReg-L: 52.1 / 46.0).
_base_ = './mask-rcnn_vit-adapter-s-dinov2_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        preset='large', arch='dinov2_large',
        window_block_indexes=[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20,
                              21, 22],
        # https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth
        init_cfg=dict(checkpoint='pretrained/dinov2_vitl14_pretrain.pth')),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.65))
