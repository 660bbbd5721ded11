# Mask2Former on ViT-Adapter-L + DINOv3-L/16 in protocol 2 (see the -s- config): the
# tokens after blocks 4, 11, 17, 23, as DINOv3 reads its ViT-L.
_base_ = './mask2former_vit-adapter-s-dinov3-frozen_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='large', arch='dinov3_large',
        interaction_indexes=[[0, 4], [5, 11], [12, 17], [18, 23]],
        init_cfg=dict(checkpoint='pretrained/dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth')),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024]))
