# Demo for comparing positional encodings (tools/compare_pe.py): a small plain
# ViT (ViTBaseline, 4 blocks, width 96, 8x8 patches) with a 1x1-conv FCN head,
# trained from scratch on 64x64 scenes whose classes only position decides
# (tools/make_demo_data.py, data/demo/position: a shape is "left" or "right" by
# the half it lies in). Nothing but the PE tells the model where a patch is:
# the patch embedding, the transformer without PE, the deconvolution pyramid
# and the 1x1 head are all translation-equivariant (up to the bilinear
# resampling at the image borders). No flip augmentation, which would swap
# the classes. MPVG's final-norm term needs final_norm=True, so every scheme
# runs with the final LayerNorm.
_base_ = [
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)
# stop at the first NaN / infinite image or loss, naming the iteration and the files
custom_hooks = [dict(type='mmvitpe.NonFiniteCheckHook')]

data_root = 'data/demo/position/'
metainfo = dict(classes=('background', 'left', 'right'),
                palette=[(120, 120, 120), (220, 20, 60), (0, 128, 255)])
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size=crop_size),
    pretrained=None,
    backbone=dict(
        type='mmvitpe.ViTBaseline', embed_dim=96, depth=4, num_heads=3, patch_size=8,
        pretrain_size=64, pos_embed=dict(type='LearnedPE'), final_norm=True,
        # the head reads the stride-4 level only: take every level from the last block,
        # so that all four blocks (and their PE terms) are trained
        out_indices=[3, 3, 3, 3], norm_cfg=norm_cfg),
    decode_head=dict(
        type='FCNHead', in_channels=96, in_index=0, channels=96, num_convs=0,
        concat_input=False, dropout_ratio=0.0, num_classes=3, norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# the Resize is what tools/compare_pe.py --test-sizes overrides
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                           seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation',
                                           seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 200
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'backbone.pe.': dict(decay_mult=0.),
                                    'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=20, end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
