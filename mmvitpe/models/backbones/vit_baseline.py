"""The "ViT baseline" of the ViT-Adapter paper: a plain ViT read out at four
depths and turned into a pyramid by deconvolution / identity / max-pooling
(Chen et al., ICLR 2023, Sec. 4; after the ViTDet-style simple pyramid).

    f_k = tokens after block out_indices[k], as a map at stride 16 (patch 16)
    out = [deconv(deconv(f_1)), deconv(f_2), f_3, maxpool(f_4)] -> norms

Runs on the same PE-pluggable core as :class:`ViTAdapter`, so the two compare
scheme for scheme. Like it, the backbone zero-pads the image to a multiple of
32 and crops the outputs to ceil(H / stride) for strides 4..32, so every level
stays aligned with the image. A patch size other than 16 gives pyramid strides
patch/4 .. 2*patch; those maps are resampled at the pixel centres of strides
4..32 (with patch 14 the ViT grid, padded to whole patches, spans a few pixels
more than the image; the max-pool keeps an odd last row and column).
"""
from typing import List, Optional, Sequence

from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_int_list
from .dense import DenseViT


@MODELS.register_module()
class ViTBaseline(DenseViT):
    """Plain ViT with a simple four-level pyramid.

    Args:
        out_indices: Blocks whose outputs become the four levels (default:
            the last block of each quarter of the depth).
        **kwargs: See :class:`DenseViT` (arch, pos_embed, norm_cfg, final_norm,
            freeze_vit, ...) and :class:`PEViT` (init_cfg/pretrained, window
            attention, ...). ``norm_cfg`` is also the norm inside the stride-4
            branch.
    """

    def __init__(self, out_indices: Optional[Sequence[int]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        quarter = self.depth // 4
        self.out_indices = (check_int_list('ViTBaseline', 'out_indices', out_indices)
                            if out_indices is not None else
                            [quarter * k - 1 for k in range(1, 5)])
        if len(self.out_indices) != 4 or sorted(self.out_indices) != self.out_indices or \
                not all(0 <= i < self.depth for i in self.out_indices):
            raise ValueError(f'out_indices={self.out_indices}: need 4 non-decreasing block '
                             f'indices in 0..{self.depth - 1}')
        dim = self.embed_dim
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2),
                                  build_norm_layer(self.norm_cfg, dim)[1], nn.GELU(),
                                  nn.ConvTranspose2d(dim, dim, 2, 2))
        self.fpn2 = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2, 2, ceil_mode=True)

    def pyramid(self, img: Tensor) -> List[Tensor]:
        maps = self.trunk_maps(img, self.out_indices)
        return self.simple_pyramid((self.fpn1, self.fpn2, self.fpn3, self.fpn4), maps, img)
