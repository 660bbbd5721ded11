"""ViTDet (Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022; detectron2 ``modeling/backbone/vit.py``): a plain ViT with
windowed attention in most blocks and global attention in a few, its last map
turned into a pyramid by ``SimpleFeaturePyramid``:

    map = ViT(img)[last block]                                  (stride 16)
    simfp_2 = deconv, LN, GELU, deconv  (x4)   simfp_3 = deconv (x2)
    simfp_4 = identity                          simfp_5 = max-pool (/2)
    each then conv 1x1 + LN, conv 3x3 + LN  ->  p2..p5 with out_channels

The pyramid is built inside the backbone, as detectron2 does, so its layers and
keys are detectron2's and the dense base's padding and cropping apply to it;
its own norms end it, so the base adds no output norms. detectron2's
``LastLevelMaxPool`` (p6 for the RPN) is the neck :class:`LastLevelMaxPool`.

The PE is detectron2's by default (:class:`~mmvitpe.models.pos_encodings.ViTDetPE`:
an absolute table pretrained at 224 px, resized, plus decomposed relative
position sized per window / global block), or any other scheme. Windows pad the
normed tokens before the qkv projection, as detectron2 (``window_padding='tokens'``).
"""
from typing import List, Optional, Sequence, Union

import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_int
from ..layers import norms  # noqa: F401  (registers LN2d)
from ..vit import resolve_arch
from .dense import DenseViT

# detectron2's ViTDet recipes (projects/ViTDet/configs/COCO): window 14, global
# attention in the last block of each quarter; B's drop path for the smaller sizes
_QUARTERS_12 = [0, 1, 3, 4, 6, 7, 9, 10]
VITDET_SETTINGS = {
    'tiny': dict(arch='tiny', drop_path_rate=0.1, window_block_indexes=_QUARTERS_12),
    'small': dict(arch='small', drop_path_rate=0.1, window_block_indexes=_QUARTERS_12),
    'base': dict(arch='base', drop_path_rate=0.1, window_block_indexes=_QUARTERS_12),
    'large': dict(arch='large', drop_path_rate=0.4,
                  window_block_indexes=[i for i in range(24) if i not in (5, 11, 17, 23)]),
}


@MODELS.register_module()
class ViTDet(DenseViT):
    """ViTDet's backbone: windowed ViT + simple feature pyramid.

    Args:
        preset: 'tiny' | 'small' | 'base' | 'large' (:data:`VITDET_SETTINGS`);
            arch, drop_path_rate and window_block_indexes, each overridable.
        window_size: Window side of the windowed blocks (ViTDet: 14; 0 with
            ``window_block_indexes=[]``: global attention everywhere).
        input_size: Image side the model is fine-tuned at, which sizes the
            global blocks' relative tables (ViTDet: 1024, a 64x64 grid at patch 16).
        out_channels: Channels of every level (ViTDet: 256).
        **kwargs: See :class:`DenseViT` (arch, pos_embed, norm_cfg — the
            pyramid's norm, default LN2d with eps 1e-6 —, final_norm,
            freeze_vit, ...) and :class:`PEViT`. ``pos_embed`` defaults to the
            arch's scheme, or else ViTDetPE.
    """
    output_norms = False
    projects_channels = True

    def __init__(self, preset: str = 'base', window_size: int = 14, input_size: int = 1024,
                 out_channels: int = 256, pos_embed: Union[dict, list, None] = None,
                 window_block_indexes: Optional[Sequence[int]] = None, **kwargs) -> None:
        if not isinstance(preset, str) or preset not in VITDET_SETTINGS:
            raise ValueError(f'ViTDet: unknown preset {preset!r}; valid: '
                             f'{sorted(VITDET_SETTINGS)}')
        settings = VITDET_SETTINGS[preset]
        kwargs.setdefault('arch', settings['arch'])
        kwargs.setdefault('drop_path_rate', settings['drop_path_rate'])
        kwargs.setdefault('norm_cfg', dict(type='LN2d', eps=1e-6))
        kwargs.setdefault('window_padding', 'tokens')
        if pos_embed is None and resolve_arch(kwargs['arch'], {}).get('pos_embed') is None:
            pos_embed = dict(type='ViTDetPE')
        super().__init__(
            pos_embed=pos_embed, out_channels=out_channels, input_size=input_size,
            window_size=check_int('ViTDet', 'window_size', window_size, minimum=0),
            window_block_indexes=(settings['window_block_indexes'] if window_block_indexes is None
                                  else window_block_indexes), **kwargs)
        dim, half, quarter = self.embed_dim, self.embed_dim // 2, self.embed_dim // 4
        norm = self.norm_cfg
        self.simfp_2 = nn.Sequential(
            nn.ConvTranspose2d(dim, half, 2, 2), build_norm_layer(norm, half)[1], nn.GELU(),
            nn.ConvTranspose2d(half, quarter, 2, 2), *self._output_convs(quarter))
        self.simfp_3 = nn.Sequential(nn.ConvTranspose2d(dim, half, 2, 2),
                                     *self._output_convs(half))
        self.simfp_4 = nn.Sequential(*self._output_convs(dim))
        # ceil: an odd grid (patch 14) keeps its last row and column, as ViTBaseline's
        self.simfp_5 = nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True),
                                     *self._output_convs(dim))

    def _output_convs(self, channels: int) -> List[nn.Module]:
        """detectron2's ``Conv2d(..., bias=False, norm=...)`` pair: 1x1, then 3x3."""
        return [ConvModule(channels, self.out_channels, 1, bias=False, norm_cfg=self.norm_cfg,
                           act_cfg=None),
                ConvModule(self.out_channels, self.out_channels, 3, padding=1, bias=False,
                           norm_cfg=self.norm_cfg, act_cfg=None)]

    def pyramid(self, img: Tensor) -> List[Tensor]:
        (feat,) = self.trunk_maps(img, [self.depth - 1])
        return self.simple_pyramid((self.simfp_2, self.simfp_3, self.simfp_4, self.simfp_5),
                                   [feat] * 4, img)


@MODELS.register_module()
class LastLevelMaxPool(nn.Module):
    """A neck adding one coarser level: the last level subsampled by 2 (a 1x1
    max-pool of stride 2, detectron2's ``LastLevelMaxPool``; mmdet's FPN does
    the same with ``add_extra_convs=False`` but only behind its own lateral and
    output convs, which ViTDet's pyramid already has)."""

    def forward(self, feats: Sequence[Tensor]) -> tuple:
        return (*feats, F.max_pool2d(feats[-1], kernel_size=1, stride=2, padding=0))
