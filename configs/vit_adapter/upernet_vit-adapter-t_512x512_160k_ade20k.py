# ViT-Adapter-T UperNet, 512x512 crops, 160k iterations. Paper: 42.6 mIoU
# single-scale / 43.6 multi-scale (ADE20K val), total batch 16.
_base_ = [
    '../_base_/models/upernet_vit-adapter-t.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
# stop at the first NaN / infinite image or loss, naming the iteration and the files
custom_hooks = [dict(type='mmvitpe.NonFiniteCheckHook')]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=12e-5, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='mmvitpe.LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# 8 GPUs x 2 images; the original trains with fp16: add --amp on GPUs
train_dataloader = dict(batch_size=2)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=16000, save_best='mIoU'))
