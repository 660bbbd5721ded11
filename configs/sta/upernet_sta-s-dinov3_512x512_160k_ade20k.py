# STA over DINOv3-S/16 as DEIMv2-L's backbone (stem width 32, width 224) with its RoPE and its class and 4 storage
# tokens, in UperNet 160k (the -t- config's schedule at DeiT-S's lr). No published number.
_base_ = './upernet_sta-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
        conv_inplane=32, out_channels=224,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth (see configs/foundation)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')),
    decode_head=dict(in_channels=[224, 224, 224, 224]),
    auxiliary_head=dict(in_channels=224))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
