# ViT-Adapter-T UperNet 160k with MPVG (Lee et al. 2025).
# MPVG paper, batch 8: 41.69 mIoU (DeiT-Ti pretrained with MPVG; default 40.55).
# Starts from DeiT-T weights (learned PE); see docs/weights.md on moving weights across schemes.
_base_ = '../vit_adapter/upernet_vit-adapter-t_512x512_160k_ade20k.py'

# MPVG's last-norm term acts where the backbone reads the ViT tokens out
model = dict(backbone=dict(pos_embed=dict(type='MPVG'), final_norm=True))
