# Mask R-CNN + FPN on DEIMv2's spatial tuning adapter (STA) over DeiT-T: taps after
# blocks 5, 8, 11 (final norm), the light stem at width 16, a stride-4 level from the
# stem and the first tap. DEIMv2 trains a DETR-style detector, not Mask R-CNN, so the
# recipe is the ViT-Adapter-T 3x one (multi-scale, AdamW lr 1e-4). No published number.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

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
