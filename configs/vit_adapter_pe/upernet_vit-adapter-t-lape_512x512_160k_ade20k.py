# ViT-Adapter-T UperNet 160k with LaPE layer-adaptive PE (Yu et al. 2023).
# LaPE paper: 41.52 mIoU (DeiT-Ti pretrained with LaPE; default PE 40.66).
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(backbone=dict(pos_embed=dict(type='LaPE')))
