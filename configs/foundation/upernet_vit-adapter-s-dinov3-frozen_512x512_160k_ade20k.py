# UperNet on ViT-Adapter-S + DINOv3-S/16 in protocol 2 (DINOv3's DINOv3_Adapter,
# facebookresearch/dinov3 dinov3/eval/segmentation/models/backbone/dinov3_adapter.py):
# the ViT frozen and run without autograd under bf16 autocast, with its class and 4
# storage tokens and its RoPE; extractor-only interactions on the final-normed
# tokens after blocks 2, 5, 8, 11, those tokens added per stage; the adapter's
# DINOv3 sizes (16 deformable heads, ratio 0.5, drop path 0.3). Schedule and lr of
# the DeiT-S UperNet config (DINOv3 published Mask2Former numbers only).
_base_ = '../vit_adapter/upernet_vit-adapter-s_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        # qkv_bias: the official layout has one (its k part masked, applied when
        # loading), whether the released values are zero or not
        type='mmvitpe.DINOv3Adapter',
        arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
        class_token=True, num_register_tokens=4,
        vit_autocast='bfloat16', with_cp=True,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth, from the link DINOv3's
        # access form sends (github.com/facebookresearch/dinov3#pretrained-models)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')))
