# ViT-Adapter-S UperNet, 512x512, 160k. Paper: 46.2 mIoU single-scale / 47.1 multi-scale.
_base_ = './upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='small',
        # https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth
        init_cfg=dict(checkpoint='pretrained/deit_small_patch16_224-cd65a155.pth')),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
