# Mask R-CNN + FPN with ViT-Adapter-T, as the original detection configs
# (czczup/ViT-Adapter detection/configs/mask_rcnn): DeiT-T weights, 14x14 window
# attention except in blocks 2, 5, 8 and 11, the final ViT tokens added to all
# four levels, SyncBN in the spatial prior module and the output norms.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvitpe.ViTAdapter',
        preset='tiny',
        pos_embed=dict(type='LearnedPE'),
        window_size=14,
        window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],
        vit_feature_mode='last',
        norm_cfg=dict(type='SyncBN'),
        # https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/deit_tiny_patch16_224-a1311bcf.pth')),
    neck=dict(in_channels=[192, 192, 192, 192]))
