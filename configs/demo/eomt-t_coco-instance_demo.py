# Demo: EoMT instance segmentation in mmdet's MaskFormer, a DeiT-T-sized ViT trained
# from scratch on CPU on the built-in shapes data in COCO layout: the real EoMT COCO
# config with a tiny trunk, 2 query blocks, 20 queries, and EoMT's schedule shortened
# to 200 iterations.
_base_ = '../eomt/eomt-l-dinov3_640x640_12e_coco-instance.py'

data_root = 'data/demo/coco/'
metainfo = dict(classes=('square', 'circle', 'triangle'),
                palette=[(220, 20, 60), (0, 128, 255), (60, 200, 60)])
num_classes = 3
max_iters = 200
model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=None),
    backbone=dict(
        _delete_=True, type='mmvitpe.EoMT', arch='tiny', pos_embed=dict(type='LearnedPE'),
        pretrain_size=160, num_classes=num_classes, num_queries=20, num_blocks=2,
        mask_annealing=dict(start_iters=[20, 60], end_iters=[80, 140], power=0.9)),
    panoptic_head=dict(num_things_classes=num_classes, loss=dict(num_points=1024)),
    panoptic_fusion_head=dict(num_things_classes=num_classes),
    test_cfg=dict(max_per_image=20))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=4e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='mmvitpe.TwoStageWarmupPolyLR', warmup_iters=[10, 20], power=0.9,
         begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
