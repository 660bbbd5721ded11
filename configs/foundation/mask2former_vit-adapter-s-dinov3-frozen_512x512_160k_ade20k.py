# Mask2Former (mmseg's ADE20K 512 recipe, mmseg configs/mask2former) on ViT-Adapter-S +
# DINOv3-S/16 in protocol 2, DINOv3's own head for segmentation (it published
# Mask2Former numbers only; its training recipe is not released, so head, schedule and
# optimizer are mmseg's R-50 ones). The backbone is that of the UperNet -s- config.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'

custom_imports = dict(imports=['mmdet.models', 'mmvitpe'], allow_failed_imports=False)
# stop at the first NaN / infinite image or loss, naming the iteration and the files
custom_hooks = [dict(type='mmvitpe.NonFiniteCheckHook')]
model = dict(
    backbone=dict(
        _delete_=True, type='mmvitpe.DINOv3Adapter', preset='small',
        arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
        class_token=True, num_register_tokens=4,
        vit_autocast='bfloat16', with_cp=True,
        norm_cfg=dict(type='SyncBN'),
        # dinov3_vits16_pretrain_lvd1689m-08c60483.pth (see the UperNet -s- config)
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/dinov3_vits16_pretrain_lvd1689m-08c60483.pth')),
    decode_head=dict(in_channels=[384, 384, 384, 384]))
# mmseg's 0.1 lr multiplier on 'backbone' is for a pretrained ResNet: here the frozen ViT
# has no optimizer slot and the adapter around it starts new, at the head's lr
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
