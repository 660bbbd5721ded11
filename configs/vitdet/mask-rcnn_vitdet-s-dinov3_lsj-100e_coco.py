# ViTDet-S on DINOv3-S/16 with its own PE (RoPE) and its class and 4 storage tokens
# (global in the windowed blocks), the ViTDet recipe of the -t- config. No published
# number for this combination.
_base_ = './mask-rcnn_vitdet-t_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        preset='small', arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'),
        qkv_bias=True, class_token=True,
        num_register_tokens=4,
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth, from the link DINOv3's access
        # form sends (github.com/facebookresearch/dinov3#pretrained-models)
        init_cfg=dict(checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')))
