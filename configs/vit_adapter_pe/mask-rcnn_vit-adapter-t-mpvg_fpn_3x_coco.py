# ViT-Adapter-T Mask R-CNN 3x with MPVG (Lee et al. 2025).
# MPVG paper, batch 8: 46.5 box / 41.4 mask (DeiT-Ti pretrained with MPVG; default 45.9 / 41.0).
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

# MPVG's last-norm term acts where the backbone reads the ViT tokens out
model = dict(backbone=dict(pos_embed=dict(type='MPVG'), final_norm=True))
