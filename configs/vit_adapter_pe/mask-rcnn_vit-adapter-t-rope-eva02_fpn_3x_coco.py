# ViT-Adapter-T Mask R-CNN 3x with EVA-02's RoPE (positions rescaled to the 14x14
# pretraining grid; for EVA-02 weights at 224 px / patch 14 set ref_grid=(16, 16)).
# No published number for this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(backbone=dict(pos_embed=dict(type='RoPEEVA02')))
