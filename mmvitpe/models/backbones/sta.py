"""STA, the spatial tuning adapter of DEIMv2 (Huang et al., "Real-Time Object
Detection Meets DINOv3", 2025; Intellindust-AI-Lab/DEIMv2
``engine/backbone/dinov3_adapter.py``, ``DINOv3STAs``): three ViT taps resized
bilinearly to the pyramid's levels, each concatenated with the level of a light
convolutional stem (``SpatialPriorModulev2``), then a 1x1 conv and a norm. No
deformable attention, no interaction with the ViT.

    tap_k = ViT tokens after block interaction_indexes[k] (final norm, patch tokens)
    level_s = norm_s(conv1x1_s([resize(tap, s); spm_s]))

DEIMv2 outputs strides 8, 16, 32 from taps 0, 1, 2 (the first upsampled x2, the
last downsampled x2). Mask R-CNN and UperNet also want stride 4: it is made the
same way, from the stem's stride-4 map (after its max-pool, ``conv_inplane``
channels) and the first tap upsampled x4, through a fourth 1x1 conv
(``stride4_conv``) and ``norm1``, which start new on DEIMv2's weights. The three
DEIMv2 levels are DEIMv2's numbers on its weights: its ``convs.k`` / ``norms.k``
load as ``convs.k`` / ``norm<k+2>``.
"""
from typing import List, Optional, Sequence

import torch
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_int, check_int_list
from .dense import OUT_STRIDES, DenseViT, resample_to_level


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)


class SpatialPriorModuleV2(nn.Module):
    """DEIMv2's light stem: maps at strides 4 (after a max-pool), 8, 16 and 32 with
    c, 2c, 4c, 4c channels; stride-2 3x3 convs without bias, each followed by a
    norm, GELU between them (layer names as DEIMv2's). ViT-Adapter's SPM
    (``layers/adapter_modules.py``) is the near-miss: more convs, wider, with
    projections to the ViT width."""

    def __init__(self, in_channels: int, inplanes: int, norm_cfg: dict) -> None:
        super().__init__()

        def norm(channels: int) -> nn.Module:
            return build_norm_layer(norm_cfg, channels)[1]
        self.stem = nn.Sequential(_conv3x3(in_channels, inplanes), norm(inplanes), nn.GELU(),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(_conv3x3(inplanes, 2 * inplanes), norm(2 * inplanes))
        self.conv3 = nn.Sequential(nn.GELU(), _conv3x3(2 * inplanes, 4 * inplanes),
                                   norm(4 * inplanes))
        self.conv4 = nn.Sequential(nn.GELU(), _conv3x3(4 * inplanes, 4 * inplanes),
                                   norm(4 * inplanes))

    def forward(self, img: Tensor) -> List[Tensor]:
        c1 = self.stem(img)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        return [c1, c2, c3, self.conv4(c3)]


@MODELS.register_module()
class STA(DenseViT):
    """DEIMv2's spatial tuning adapter with a pluggable positional encoding.

    Args:
        interaction_indexes: The three tapped blocks (default: the last of the
            second quarter, of the third and the last block; DEIMv2's ViT-S
            configs: 5, 8, 11).
        conv_inplane: Width of the stem's first level (DEIMv2: 16 for S/M, 32 for
            L, 64 for X).
        **kwargs: See :class:`DenseViT` (arch — default ``dinov3_small`` —,
            pos_embed, norm_cfg — the stem's and the outputs' norm —,
            ``out_channels`` — DEIMv2's ``hidden_dim``, default the ViT width —,
            freeze_vit, ...) and :class:`PEViT`. ``final_norm`` defaults to True
            (DEIMv2 taps ``get_intermediate_layers``' normed tokens) and the
            class token and the arch's register tokens run with the ViT, as in
            DEIMv2.
    """

    projects_channels = True

    def __init__(self, interaction_indexes: Optional[Sequence[int]] = None,
                 conv_inplane: int = 16, **kwargs) -> None:
        kwargs.setdefault('arch', 'dinov3_small')
        if 'vit_final_norm' not in kwargs:  # its former spelling sets it otherwise
            kwargs.setdefault('final_norm', True)
        kwargs.setdefault('class_token', True)
        kwargs.setdefault('num_register_tokens', None)  # the arch's
        super().__init__(**kwargs)
        depth = self.depth
        taps = ([depth // 2 - 1, 3 * depth // 4 - 1, depth - 1] if interaction_indexes is None
                else check_int_list('STA', 'interaction_indexes', interaction_indexes))
        if len(taps) != 3 or sorted(taps) != taps or not all(0 <= i < depth for i in taps):
            raise ValueError(f'STA: interaction_indexes={taps}: need 3 non-decreasing block '
                             f'indexes in 0..{depth - 1}')
        self.interaction_indexes = taps
        inplanes = check_int('STA', 'conv_inplane', conv_inplane)
        self.sta = SpatialPriorModuleV2(self.in_channels, inplanes, self.norm_cfg)
        self.stride4_conv = nn.Conv2d(self.embed_dim + inplanes, self.out_channels, 1,
                                      bias=False)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.embed_dim + c, self.out_channels, 1, bias=False)
            for c in (2 * inplanes, 4 * inplanes, 4 * inplanes))

    def new_start_reason(self, name: str) -> Optional[str]:
        if name.startswith(('stride4_conv.', 'norm1.')):
            return ("STA's stride-4 level, which DEIMv2 does not have; starts at its "
                    'initialisation')
        return super().new_start_reason(name)

    def pyramid(self, img: Tensor) -> List[Tensor]:
        spm = self.sta(img)
        taps = self.trunk_maps(img, self.interaction_indexes)
        # the first tap serves strides 4 and 8, as DEIMv2's serves 8; resampled at each
        # level's pixel centres (DEIMv2's bilinear resize at patch 16, and a 14-px grid,
        # which spans more than the padded image, stays aligned with it)
        maps = [taps[0], taps[0], taps[1], taps[2]]
        return [conv(torch.cat([resample_to_level(vit, self.patch_size, stride, level.shape),
                                level], dim=1))
                for conv, vit, level, stride in zip([self.stride4_conv, *self.convs], maps, spm,
                                                    OUT_STRIDES)]
