# ViT-Adapter-T UperNet 160k with LookHere-180 (directed heads, 'halves'). DeiT-T has 3
# heads, so they look up, down and left; no head is directed right (LookHere's presets
# assume a multiple of 4 heads).
# No published number for this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(backbone=dict(pos_embed=dict(type='LookHere')))
