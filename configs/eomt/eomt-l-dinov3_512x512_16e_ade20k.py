# EoMT-L on DINOv3-L/16, ADE20K semantic, 512x512 crops: EoMT's recipe
# (tue-mps/eomt configs/dinov3/ade20k/semantic/eomt_large_512.yaml): 100 queries in
# the last 4 blocks, lr 2e-4 for every parameter (its llrd 1.0; its lr_mult 0.1 is
# never applied by its code), AdamW weight decay 0.05 on all, heads warmed up over
# 2000 iterations while the ViT waits, then the ViT over 3000, poly 0.9; 16 epochs of
# 1263 iterations at batch 16 = 20208 iterations; gradient norm clipped at 0.01.
# Published: 59.5 mIoU (single scale), 137 FPS on an H100 (configs/eomt/README.md).
_base_ = [
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmdet.models', 'mmvitpe'], allow_failed_imports=False)
num_classes = 150
crop_size = (512, 512)
max_iters = 20208
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmvitpe.EoMT',
        arch='dinov3_large',
        # DINOv3's RoPE with its training-time coordinate rescaling in [1/2, 2], as the
        # transformers model EoMT trains (pos_embed_rescale=2); another scheme: give
        # pos_embed=dict(_delete_=True, type=...) in a config over this one
        pos_embed=dict(type='RoPEDINOv3', rescale_coords=2.),
        qkv_bias=True,
        num_classes=num_classes,
        num_queries=100,
        num_blocks=4,
        # EoMT's attn_mask_annealing_start_steps / end_steps
        mask_annealing=dict(start_iters=[0, 6520, 9780, 13040],
                            end_iters=[3000, 9780, 13040, 16300], power=0.9),
        # dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth: the file Meta's access form sends
        # (github.com/facebookresearch/dinov3#pretrained-models); the hub's
        # facebook/dinov3-vitl16-pretrain-lvd1689m directory loads too
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth')),
    decode_head=dict(type='mmvitpe.EoMTSegHead', num_classes=num_classes,
                     loss=dict(type='mmvitpe.MaskClassificationLoss')),
    train_cfg=dict(),
    # EoMT evaluates 512-px windows along the long side of a 512-px short side,
    # evenly spread; mmseg's sliding window at stride 341 places the same two
    # windows for a side up to 853 px
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
# EoMT's ScaleJitter (long side 512 x U(0.5, 2)), crop, flip and colour jitter
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# 4 GPUs x 4 images (total 16, as EoMT); EoMT trains with fp16 autocast: add --amp
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    constructor='mmvitpe.EoMTOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=1.0))
param_scheduler = [
    dict(type='mmvitpe.TwoStageWarmupPolyLR', warmup_iters=[2000, 3000], power=0.9,
         begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1263 * 2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
custom_hooks = [dict(type='mmvitpe.EoMTMaskAnnealingHook'),
                # stop at the first NaN / infinite image or loss, naming the iteration
                dict(type='mmvitpe.NonFiniteCheckHook')]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1263 * 2,
                    save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
