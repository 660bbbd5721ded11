# Demo: the real ViT-Adapter-T (MPVG) UperNet config, trained from scratch for
# a few minutes on CPU on the built-in shapes data in ADE20K layout.
_base_ = '../vit_adapter_pe/upernet_vit-adapter-t-mpvg_512x512_160k_ade20k.py'

data_root = 'data/demo/ade/'
metainfo = dict(classes=('background', 'square', 'circle', 'triangle'),
                palette=[(120, 120, 120), (220, 20, 60), (0, 128, 255), (60, 200, 60)])
crop_size = (160, 160)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None, drop_path_rate=0.0),
    decode_head=dict(num_classes=4, channels=128),
    auxiliary_head=dict(num_classes=4, channels=64),
    test_cfg=dict(mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                           seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation',
                                           seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 200
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
