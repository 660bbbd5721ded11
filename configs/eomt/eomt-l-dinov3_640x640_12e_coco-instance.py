# EoMT-L on DINOv3-L/16, COCO instance segmentation, 640x640: EoMT's recipe
# (tue-mps/eomt configs/dinov3/coco/instance/eomt_large_640.yaml) in mmdet's
# MaskFormer detector (EoMT as the backbone, its instance head, mmdet's
# MaskFormerFusionHead for the top-100 query-class pairs): 200 queries in the last 4
# blocks, lr 2e-4, layer decay 0.8 but for the query blocks, warmup 2000 + 3000, poly
# 0.9; 12 epochs of 7329 iterations at batch 16 = 87948 iterations; large-scale
# jitter (0.1-2.0) to 640 crops; at test the long side at 640.
# Published: 45.9 mask AP, 133 FPS on an H100 (configs/eomt/README.md).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)
num_classes = 80
image_size = (640, 640)
max_iters = 87948
model = dict(
    type='MaskFormer',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
        # every image padded to 640x640, in training and at test (the long side is 640),
        # as EoMT: RoPE's normalised coordinates then mean the same spacing in both
        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=640, pad_mask=True,
        mask_pad_value=0, pad_seg=False,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, img_pad_value=0,
                             pad_mask=True, mask_pad_value=0, pad_seg=False)]),
    backbone=dict(
        type='mmvitpe.EoMT',
        arch='dinov3_large',
        pos_embed=dict(type='RoPEDINOv3', rescale_coords=2.),  # as EoMT's transformers model
        qkv_bias=True,
        num_classes=num_classes,
        num_queries=200,
        num_blocks=4,
        mask_annealing=dict(start_iters=[14782, 29564, 44346, 59128],
                            end_iters=[29564, 44346, 59128, 73910], power=0.9),
        # dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth (github.com/facebookresearch/dinov3)
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth')),
    panoptic_head=dict(type='mmvitpe.EoMTInstanceHead', num_things_classes=num_classes,
                       num_stuff_classes=0, loss=dict(type='mmvitpe.MaskClassificationLoss')),
    panoptic_fusion_head=dict(type='MaskFormerFusionHead', num_things_classes=num_classes,
                              num_stuff_classes=0, loss_panoptic=None, init_cfg=None),
    train_cfg=dict(),
    test_cfg=dict(panoptic_on=False, semantic_on=False, instance_on=True, max_per_image=100,
                  iou_thr=0.8, filter_low_score=True))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), resize_type='Resize',
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
# 4 GPUs x 4 images (total 16, as EoMT); EoMT trains with fp16 autocast: add --amp
train_dataloader = dict(batch_size=4, num_workers=4,
                        dataset=dict(filter_cfg=dict(filter_empty_gt=True, min_size=32),
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['segm'])
test_evaluator = val_evaluator
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    constructor='mmvitpe.EoMTOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_query_blocks=False))
param_scheduler = [
    dict(type='mmvitpe.TwoStageWarmupPolyLR', warmup_iters=[2000, 3000], power=0.9,
         begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=7329 * 2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
custom_hooks = [dict(type='mmvitpe.EoMTMaskAnnealingHook'),
                dict(type='mmvitpe.NonFiniteCheckHook')]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=7329 * 2, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
