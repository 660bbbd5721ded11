# EoMT-L on DINOv2-L/14 with 4 registers, ADE20K semantic, 512x512: EoMT's recipe
# (tue-mps/eomt configs/dinov2/ade20k/semantic/eomt_large_512.yaml): the ViT runs at
# patch 16 (its 14-px patch kernel resampled, its position table resized to 32x32 as
# timm does for EoMT); lr 1e-4, layer decay 0.8 (the query blocks included), warmup
# 500 + 1000, 31 epochs = 39153 iterations, no mask annealing in the first 6520.
# Published: 58.4 mIoU, 92 FPS on an H100 (configs/eomt/README.md).
_base_ = './eomt-l-dinov3_512x512_16e_ade20k.py'
max_iters = 39153
model = dict(backbone=dict(
    arch='dinov2_large_reg4',
    patch_size=16,
    pretrain_size=512,
    pos_embed=dict(_delete_=True, type='LearnedPE', class_slot=False, antialias=True),
    qkv_bias=True,
    mask_annealing=dict(start_iters=[6520, 13040, 19560, 26080],
                        end_iters=[13040, 19560, 26080, 32600]),
    # timm's vit_large_patch14_reg4_dinov2.lvd142m (model.safetensors), as EoMT loads it
    init_cfg=dict(checkpoint='pretrained/vit_large_patch14_reg4_dinov2.lvd142m.safetensors')))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.8))
param_scheduler = [
    dict(type='mmvitpe.TwoStageWarmupPolyLR', warmup_iters=[500, 1000], power=0.9,
         begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters)
