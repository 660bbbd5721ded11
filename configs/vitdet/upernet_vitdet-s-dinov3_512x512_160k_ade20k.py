# ViTDet-S UperNet on DINOv3-S/16 with its own PE (RoPE) and its class and 4 storage
# tokens, the -t- config's schedule at DeiT-S's lr. No published number.
_base_ = './upernet_vitdet-t_512x512_160k_ade20k.py'

model = dict(
    backbone=dict(
        preset='small', arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'),
        qkv_bias=True, class_token=True,
        num_register_tokens=4,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth (see configs/foundation)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
