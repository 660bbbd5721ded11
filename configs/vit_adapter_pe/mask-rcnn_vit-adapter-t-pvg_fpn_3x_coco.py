# ViT-Adapter-T Mask R-CNN 3x with PVG (Lee et al. 2025).
# MPVG paper, batch 8: 46.1 box / 41.2 mask (DeiT-Ti pretrained with PVG).
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(backbone=dict(pos_embed=dict(type='PVG')))
