# ViT-Adapter-B + EVA-02-B (MIM, IN-22k), Mask R-CNN 3x + multi-scale training.
# Native patch 14 (the ViT grid at 1/14, resampled to the pyramid), EVA-02's
# learned table + RoPE rescaled to its 16x16 pretraining grid (EVA02PE), SwiGLU with
# sub-LN, no class token; windows, lr and drop path as the DeiT-B config, layer
# decay 0.70 (not tuned). No published ViT-Adapter number; baaivision/EVA#96
# reports ViT-Adapter degrading EVA-02 there.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-b_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        arch='eva02_base', pos_embed=dict(type='EVA02PE'),
        # https://huggingface.co/timm/eva02_base_patch14_224.mim_in22k (model.safetensors)
        init_cfg=dict(checkpoint='pretrained/eva02_base_patch14_224.mim_in22k.safetensors')))
optim_wrapper = dict(
    constructor='mmvitpe.LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, num_layers=12, layer_decay_rate=0.70))
