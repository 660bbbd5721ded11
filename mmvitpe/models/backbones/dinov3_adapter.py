"""DINOv3's own adapter for dense prediction: a frozen ViT read by extractor-only
interactions (facebookresearch/dinov3, ``dinov3/eval/segmentation/models/backbone/
dinov3_adapter.py``, ``DINOv3_Adapter``).

    tokens after each tap (final norm, prefix tokens dropped) -> extractor i
    pyramid = ViT-Adapter's SPM + extractors, tap i's tokens added to level i

It is :class:`ViTAdapter` without injectors, so the ViT is never changed and
runs without autograd; its definition is the four settings of
:data:`DINOV3_ADAPTER`, which this class fixes.
"""
from mmvitpe.registry import MODELS
from .vit_adapter import ViTAdapter

# what makes a ViT-Adapter DINOv3's: frozen, no injectors, the final-normed tokens of
# each tap read by its extractor and added to its level
DINOV3_ADAPTER = dict(freeze_vit=True, inject=False, vit_feature_mode='per_stage',
                      final_norm=True)
# DINOv3_Adapter's own defaults, where they differ from ViT-Adapter's presets
DINOV3_ADAPTER_DEFAULTS = dict(arch='dinov3_small', deform_num_heads=16, deform_ratio=0.5,
                               drop_path_rate=0.3)


@MODELS.register_module()
class DINOv3Adapter(ViTAdapter):
    """DINOv3's ``DINOv3_Adapter`` with a pluggable positional encoding.

    Args:
        interaction_indexes: [first, last] ViT block of each interaction; the
            last block of each is DINOv3's tap (its ``interaction_indexes``;
            ViT-7B: 9, 19, 29, 39).
        vit_autocast: 'bfloat16' runs the ViT as DINOv3 does on a GPU; None
            keeps the model's dtype (DINOv3_Adapter's CUDA autocast is off on a
            CPU, so None is the same there).
        **kwargs: :class:`ViTAdapter`'s other arguments. The class token and the
            arch's register tokens are on by default (DINOv3 runs its ViT with
            them). ``freeze_vit``, ``inject``, ``vit_feature_mode`` and
            ``final_norm`` may be given only with the values of
            :data:`DINOV3_ADAPTER`: other values are :class:`ViTAdapter`'s.
    """

    def __init__(self, **kwargs) -> None:
        definition = dict(DINOV3_ADAPTER, vit_final_norm=True)  # and its former spelling
        conflicts = {k: kwargs[k] for k in definition if k in kwargs and not (
            type(kwargs[k]) is type(definition[k]) and kwargs[k] == definition[k])}
        if conflicts:
            raise ValueError(f'DINOv3Adapter is ViTAdapter with {DINOV3_ADAPTER}; got '
                             f'{conflicts}: for other values use mmvitpe.ViTAdapter')
        for key in definition:
            kwargs.pop(key, None)
        for key, value in DINOV3_ADAPTER_DEFAULTS.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault('class_token', True)
        kwargs.setdefault('num_register_tokens', None)  # the arch's
        super().__init__(**dict(DINOV3_ADAPTER, **kwargs))
