# ViT-Adapter-T Mask R-CNN 1x. Paper: 41.1 box AP / 37.5 mask AP (COCO val2017).
_base_ = [
    '../_base_/models/mask-rcnn_vit-adapter-t_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# stop at the first NaN / infinite image or loss, naming the iteration and the files
custom_hooks = [dict(type='mmvitpe.NonFiniteCheckHook')]
# The original tiny 1x config uses lr 2e-4 and weight decay 0.01 (S/B: 1e-4, 0.05),
# with no weight decay on level/position embeddings, norms and biases.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'level_embed': dict(decay_mult=0.),
        'backbone.pe.': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'bias': dict(decay_mult=0.),
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
