# ViT-Adapter-T Mask R-CNN 3x with DINOv3's RoPE (normalised patch-centre coordinates).
# DINOv3 pretrained with rescale_coords=2: add it to pos_embed to augment here too.
# No published number for this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/mask-rcnn_vit-adapter-t_fpn_3x_coco.py'

model = dict(backbone=dict(pos_embed=dict(type='RoPEDINOv3')))
