# Demo: the real ViT-Adapter-T (MPVG) Mask R-CNN config, trained for a few
# minutes on CPU on the built-in shapes data (tools/make_demo_data.py). No
# ImageNet weights can be downloaded here, so the backbone starts from the
# segmentation demo's (same architecture, trained first by tools/run_demo.py):
# an mmseg checkpoint moved into an mmdet model through init_cfg.
_base_ = '../vit_adapter_pe/mask-rcnn_vit-adapter-t-mpvg_fpn_3x_coco.py'

data_root = 'data/demo/coco/'
metainfo = dict(classes=('square', 'circle', 'triangle'),
                palette=[(220, 20, 60), (0, 128, 255), (60, 200, 60)])
# Fewer proposals and sampled RoIs than COCO training, and one sample per RoIAlign
# bin instead of the adaptive count (up to 4x4 on these large objects): mmcv's CPU
# RoIAlign backward dominates a CPU step otherwise.
# RoIs pooled one FPN level coarser than COCO's (finest_scale 28 instead of 56:
# 28-56 px from P3, 56-112 px from P4): with one sample per bin, a 40-96 px
# object on P2 (stride 4) is read at every second pixel: bbox mAP@0.5 0.41 after
# 160 steps, 0.27 from P2
# 128 channels in the FPN and the heads instead of 256: a CPU step of 1.4 s
# instead of 2.4 s, so twice the steps in the same minutes
channels = 128
roi_extractor = dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=1),
                     out_channels=channels, finest_scale=28)
# GroupNorm in the FPN (8 channels a group): without it AdamW drifts P2 from std
# 1.8 to 37 in 120 steps
model = dict(
    neck=dict(out_channels=channels, norm_cfg=dict(type='GN', num_groups=channels // 8)),
    backbone=dict(
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='work_dirs/demo/seg/iter_200.pth')),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=roi_extractor,
        mask_roi_extractor=dict(roi_extractor, roi_layer=dict(roi_extractor['roi_layer'],
                                                              output_size=14)),
        bbox_head=dict(in_channels=channels, num_classes=3),
        mask_head=dict(in_channels=channels, conv_out_channels=channels, num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=600, max_per_img=200),
        # positives at IoU >= 0.6 and the hardest negatives (OHEM): the head's score
        # then prefers whole, well-placed boxes over boxes on a part of a shape
        rcnn=dict(assigner=dict(pos_iou_thr=0.6, neg_iou_thr=0.6, min_pos_iou=0.6),
                  sampler=dict(_delete_=True, type='OHEMSampler', num=64, pos_fraction=0.25,
                               neg_pos_ub=-1, add_gt_as_proposals=True))),
    # a scene holds at most two objects: 20 proposals, not COCO's 1000
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=20)))
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

# 10 epochs of the 128 training scenes = 320 steps
max_epochs = 10
# validation after 5 epochs shows the learning curve in the log
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# 1e-4 (the COCO config's): with 4 images a step, 4e-4 gave half the bbox mAP@0.5
# on 64 validation scenes (0.107 vs 0.237), 5e-5 0.211
# the fresh RPN and RoI heads at 4x: at 1e-4 their box regression does not
# learn in 160 steps (configs/demo/README.md).
# The first matching custom key wins, so the heads' biases (and GN's weights,
# which 'norm' does not match) get weight decay here, unlike the base config's
# biases: the results in configs/demo/README.md were measured so
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={'rpn_head': dict(lr_mult=4.), 'roi_head': dict(lr_mult=4.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9], gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=8),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
