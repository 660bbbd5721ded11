# UperNet with ViT-Adapter-T, as the original segmentation configs
# (czczup/ViT-Adapter segmentation/configs/ade20k): DeiT-T weights, global
# attention in every block, each interaction's ViT tokens added to its level.
_base_ = 'mmseg::_base_/models/upernet_r50.py'
custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmvitpe.ViTAdapter',
        preset='tiny',
        pos_embed=dict(type='LearnedPE'),
        vit_feature_mode='per_stage',
        norm_cfg=dict(type='SyncBN'),
        # https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/deit_tiny_patch16_224-a1311bcf.pth')),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=192, num_classes=150))
