# Mask2Former on a ViT-Adapter over DINOv3 ViT-7B/16, DINOv3's own segmentation setup
# (protocol 2, see the -s- config): the ViT frozen and run in bf16, read after blocks
# 9, 19, 29 and 39 by extractor-only interactions, a Mask2Former head. The adapter takes
# the ViT's width (4096), as DINOv3_Adapter does. GPU memory: docs/foundation.md.
_base_ = './mask2former_vit-adapter-s-dinov3-frozen_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='large', arch='dinov3_7b',
        interaction_indexes=[[0, 9], [10, 19], [20, 29], [30, 39]],
        # the hub's facebook/dinov3-vit7b16-pretrain-lvd1689m directory (config.json and
        # safetensors shards), or the official .pth
        init_cfg=dict(checkpoint='pretrained/dinov3-vit7b16-pretrain-lvd1689m')),
    decode_head=dict(in_channels=[4096, 4096, 4096, 4096]))
