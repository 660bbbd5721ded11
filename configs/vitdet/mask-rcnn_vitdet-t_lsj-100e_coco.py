# ViTDet-T Mask R-CNN, detectron2's ViTDet recipe (projects/ViTDet, COCO
# mask_rcnn_vitdet_b_100ep): large-scale jitter at 1024, 100 epochs (25 x 4 repeats),
# AdamW lr 1e-4, weight decay 0.1, layer decay 0.7, drop path 0.1, batch 64, steps at
# 89 % and 96 %. Changed: DeiT-T weights instead of MAE-B (no MAE-T exists), so no
# published number (ViT-B with MAE: 51.6 box AP / 45.9 mask AP).
_base_ = [
    '../_base_/models/mask-rcnn_vitdet-t.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
# stop at the first NaN / infinite image or loss, naming the iteration and the files
custom_hooks = [dict(type='mmvitpe.NonFiniteCheckHook')]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='mmvitpe.LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.7))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
# 32 GPUs x 2 images, as detectron2's 64
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=64)
