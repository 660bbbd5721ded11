# ViT-Adapter-T Mask R-CNN 3x with LaPE layer-adaptive PE (Yu et al. 2023).
# LaPE paper: 46.3 box / 41.2 mask (DeiT-Ti pretrained with LaPE; default PE 45.6 / 40.7).
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(backbone=dict(pos_embed=dict(type='LaPE')))
