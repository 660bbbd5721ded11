# ViT-Adapter-S + DINOv2-S, Mask R-CNN 3x + multi-scale training, as the original's
# dinov2 branch (czczup/ViT-Adapter detection/configs/mask_rcnn/dinov2): patch 14
# converted to 16 when the weights load (the kernel resampled, reported as resized),
# the 37x37 table kept as a grid of 16-px patches (pretrain_size 592), no class
# token, DINOv2's layer scale, layer decay 0.70 (lr 1e-4, weight decay 0.05, windows
# and drop path from the DeiT-S config). Published: 51.5 box AP / 45.6 mask AP
# (COCO val2017; DeiT-S: 48.2 / 42.8).
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-s_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='dinov2_small', patch_size=16, pretrain_size=592,
        # https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth
        init_cfg=dict(checkpoint='pretrained/dinov2_vits14_pretrain.pth')))
optim_wrapper = dict(
    constructor='mmvitpe.LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, num_layers=12, layer_decay_rate=0.70))
