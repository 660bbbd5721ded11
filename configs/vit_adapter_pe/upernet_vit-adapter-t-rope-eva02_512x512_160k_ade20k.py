# ViT-Adapter-T UperNet 160k with EVA-02's RoPE (positions rescaled to the 14x14
# pretraining grid; for EVA-02 weights at 224 px / patch 14 set ref_grid=(16, 16)).
# No published number for this combination.
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

model = dict(backbone=dict(pos_embed=dict(type='RoPEEVA02')))
