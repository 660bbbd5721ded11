# UperNet on DEIMv2's spatial tuning adapter (STA) over DeiT-T: taps after blocks 5,
# 8, 11 (final norm), the light stem at width 16, a stride-4 level from the stem and
# the first tap; the ViT-Adapter-T UperNet schedule (DEIMv2 has no segmentation
# recipe). No published number.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvitpe.STA',
        arch='tiny',
        pos_embed=dict(type='LearnedPE'),
        conv_inplane=16,
        norm_cfg=dict(type='SyncBN'),
        # https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/deit_tiny_patch16_224-a1311bcf.pth')))
