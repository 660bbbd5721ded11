# UperNet on ViTDet-T (detectron2's ViTDet backbone at DeiT-T's width): windows of 14
# but in blocks 2, 5, 8, 11, its PE with the global relative tables sized for 512 px,
# the simple feature pyramid with LN and 256 channels. 512x512 crops, 160k iterations,
# the schedule and optimizer of the ViT-Adapter-T UperNet config (ViTDet has no
# ADE20K recipe). No published number.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvitpe.ViTDet',
        preset='tiny',
        pos_embed=dict(type='ViTDetPE'),
        input_size=512,
        out_channels=256,
        # https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/deit_tiny_patch16_224-a1311bcf.pth')),
    decode_head=dict(in_channels=[256, 256, 256, 256]),
    auxiliary_head=dict(in_channels=256))
