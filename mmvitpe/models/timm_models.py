"""timm model registrations: DeiT-Ti/S/B-sized classifiers with each PE scheme.

So that a PE scheme can be pretrained on ImageNet with timm's own train.py:

    python train.py --model deit_tiny_mpvg_patch16_224 ...   (after ``import mmvitpe``)

Names: ``deit_{tiny,small,base}_{scheme}_patch16_224`` pool with GAP and have
no class token (MPVG/PVG style); ``..._cls_patch16_224`` use a class token
(ViT/DeiT/LaPE style; not registered for MPVG, which is GAP-only). The models
are :class:`~mmvitpe.models.PEViT`, so their checkpoints load straight into
ViTAdapter/ViTBaseline with the same scheme.
"""
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model

from mmvitpe.registry import POS_ENCODINGS
from .vit import PEViT

TIMM_ONLY_KWARGS = ('pretrained_cfg', 'pretrained_cfg_overlay', 'cache_dir')


def create_deit(arch: str, scheme: str, class_token: bool, pretrained: bool = False,
                **kwargs) -> PEViT:
    """A classifier with timm's expected attributes (pretrained_cfg, ...)."""
    if pretrained:
        raise ValueError('mmvitpe ships no ImageNet weights; train one with timm, or '
                         'pass checkpoint_path= to timm.create_model')
    for key in TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    if 'img_size' in kwargs:
        kwargs['pretrain_size'] = kwargs.pop('img_size')
    kwargs.setdefault('num_classes', 1000)
    model = PEViT(arch=arch, pos_embed=dict(type=scheme), class_token=class_token, **kwargs)
    model.pretrained_cfg = model.default_cfg = dict(
        input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        crop_pct=0.875, interpolation='bicubic', num_classes=kwargs['num_classes'],
        first_conv='patch_embed.proj', classifier='head')
    return model


def _register(arch: str, scheme: str, class_token: bool) -> None:
    name = f'deit_{arch}_{scheme.lower()}{"_cls" if class_token else ""}_patch16_224'

    def factory(pretrained: bool = False, **kwargs) -> PEViT:
        return create_deit(arch, scheme, class_token, pretrained, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f'DeiT-{arch} with {scheme}, {"class token" if class_token else "GAP"}.'
    register_model(factory)


for _arch in ('tiny', 'small', 'base'):
    for _scheme in sorted(POS_ENCODINGS.module_dict):
        _register(_arch, _scheme, class_token=False)
        if POS_ENCODINGS.module_dict[_scheme].supports_class_token:
            _register(_arch, _scheme, class_token=True)
