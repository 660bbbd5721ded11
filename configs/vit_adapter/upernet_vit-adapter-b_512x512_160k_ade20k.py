# ViT-Adapter-B UperNet, 512x512, 160k. Paper: 48.8 mIoU single-scale / 49.7 multi-scale.
_base_ = './upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='base',
        # https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth
        init_cfg=dict(checkpoint='pretrained/deit_base_patch16_224-b5f2ef4d.pth')),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
