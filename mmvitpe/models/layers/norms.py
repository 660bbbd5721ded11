"""Norms the mmcv registry lacks, registered where ``build_norm_layer`` finds them."""
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d

# LayerNorm over the channels of an NCHW map (detectron2's and ViTDet's "LN"; mmdet's
# ViTDet project calls it LN2d). timm's, as a layer of a kept library; registered
# in mmengine's root registry, where mmcv's build_norm_layer looks, unless a library
# loaded before registered that name.
if MODELS.get('LN2d') is None:
    MODELS.register_module('LN2d', module=LayerNorm2d)
