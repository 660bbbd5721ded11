# Mask R-CNN on ViTDet-T, as detectron2's ViTDet (projects/ViTDet,
# configs/common/models/mask_rcnn_vitdet.py) at DeiT-T's width: windows of 14 but in
# blocks 2, 5, 8, 11, its PE (224 table + decomposed relative position, global tables
# for 1024 px), the simple feature pyramid with LN and 256 channels, p6 by max-pool;
# RPN with 2 convs, 4conv1fc box head and mask head with LN.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)

head_norm_cfg = dict(type='LN2d', eps=1e-6)
model = dict(
    # detectron2 pads every image to a 1024 square (square_pad)
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='mmvitpe.ViTDet',
        preset='tiny',
        pos_embed=dict(type='ViTDetPE'),
        input_size=1024,
        out_channels=256,
        # https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/deit_tiny_patch16_224-a1311bcf.pth')),
    neck=dict(_delete_=True, type='mmvitpe.LastLevelMaxPool'),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=head_norm_cfg),
        mask_head=dict(norm_cfg=head_norm_cfg)))
