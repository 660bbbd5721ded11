# ViT-Adapter-T Mask R-CNN 3x with decomposed relative position per block (MViTv2,
# ViTDet, SAM), its tables sized per window / global block. No published number for
# this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(backbone=dict(pos_embed=dict(type='RelPosDecomposed')))
