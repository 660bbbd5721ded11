# Demo: EoMT on a DeiT-T-sized ViT (learned absolute PE), trained from scratch on CPU
# on the built-in shapes data in ADE20K layout: the real EoMT semantic config with a
# tiny trunk, 2 query blocks, and EoMT's schedule shortened to 200 iterations.
_base_ = '../eomt/eomt-l-dinov3_512x512_16e_ade20k.py'

data_root = 'data/demo/ade/'
metainfo = dict(classes=('background', 'square', 'circle', 'triangle'),
                palette=[(120, 120, 120), (220, 20, 60), (0, 128, 255), (60, 200, 60)])
crop_size = (160, 160)
max_iters = 200
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True, type='mmvitpe.EoMT', arch='tiny', pos_embed=dict(type='LearnedPE'),
        pretrain_size=160, num_classes=4, num_queries=16, num_blocks=2,
        mask_annealing=dict(start_iters=[20, 60], end_iters=[80, 140], power=0.9)),
    decode_head=dict(num_classes=4, loss=dict(num_points=1024)),
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
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                           seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation',
                                           seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=4e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='mmvitpe.TwoStageWarmupPolyLR', warmup_iters=[10, 20], power=0.9,
         begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
