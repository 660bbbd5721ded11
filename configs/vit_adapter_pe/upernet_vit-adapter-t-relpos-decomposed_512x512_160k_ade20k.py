# ViT-Adapter-T UperNet 160k with decomposed relative position per block (MViTv2,
# ViTDet, SAM). No published number for this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(backbone=dict(pos_embed=dict(type='RelPosDecomposed')))
