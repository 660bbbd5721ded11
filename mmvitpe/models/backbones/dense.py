"""The dense base every adapter protocol builds on: a pyramid from a PE-pluggable
ViT trunk, for any input size.

    forward(img) = crop(norms(pyramid(pad(img))))

The image is zero-padded at the bottom/right to a size every level divides
(``size_divisibility``, detectron2's ``padding_constraints``), the protocol's
:meth:`DenseViT.pyramid` turns it into four maps at strides 4..32, each passes
its output norm (``norm1..norm4``), and is cropped back to the part covering
the real image, so the levels stay aligned with it.
"""
import warnings
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from mmvitpe.utils.validation import check_bool, check_int, check_norm_cfg
from ..vit import PEViT

# strides of the four output levels, as mmdet's FPN and mmseg's UperNet expect
OUT_STRIDES = (4, 8, 16, 32)
TRUNK_AUTOCAST = (None, 'bfloat16', 'float16')


class DenseViT(PEViT):
    """A ViT trunk, a protocol's pyramid, output norms and the padding around them.

    A protocol subclasses this and implements :meth:`pyramid` only.

    Args:
        arch: The trunk's arch (see :class:`PEViT`).
        pos_embed: The trunk's PE scheme (see :class:`PEViT`).
        norm_cfg: Norm of the outputs (``norm1..norm4``, strides 4..32) and of
            the protocol's own layers that take one (BN, SyncBN, GN, LN2d, ...).
            Default BN.
        final_norm: Pass the trunk's read-out through its final LayerNorm and
            the PE's final site (MPVG's last-norm term) before the pyramid.
            Default False, as the original ViT-Adapter and ViT baseline.
            (``vit_final_norm`` is its former ViTAdapter spelling.)
        freeze_vit: Freeze the trunk (patch embedding, prefix tokens, PE,
            blocks, final norm): no gradients, so no optimizer slots (the
            layer-decay constructor skips them), and kept in eval mode (no
            dropout, drop path or PE train-time augmentation). Unless the
            protocol feeds back into the trunk (ViT-Adapter's injectors), the
            trunk then runs without autograd.
        vit_autocast: 'bfloat16' or 'float16': run the frozen trunk under
            autocast to that dtype (DINOv3's adapter: bfloat16), its tokens cast
            back to the protocol's dtype; needs ``freeze_vit=True`` and a
            protocol that does not feed back into the trunk.
        out_channels: Channels of every output level, for a protocol that
            projects its levels (ViTDet, STA; default: the trunk's width).
        **kwargs: The trunk's other arguments (see :class:`PEViT`).
            ``class_token`` and ``num_register_tokens`` default to off, also for
            a foundation arch (as the original ViT-Adapter's DINOv2 configs);
            when on, the prefix tokens run through the trunk and the protocol
            uses the patch tokens.
    """
    # the image is padded to a multiple of the coarsest stride
    size_divisibility: int = OUT_STRIDES[-1]
    # False for a protocol whose pyramid ends in its own norms (ViTDet's)
    output_norms: bool = True
    # True for a protocol that projects its levels to out_channels (ViTDet, STA); the
    # others give the trunk's width
    projects_channels: bool = False

    def __init__(self, arch: Union[str, dict] = 'tiny', pos_embed: Union[dict, list, None] = None,
                 norm_cfg: Optional[dict] = None, final_norm: Optional[bool] = None,
                 freeze_vit: bool = False, vit_autocast: Optional[str] = None,
                 out_channels: Optional[int] = None, **kwargs) -> None:
        owner = type(self).__name__
        if 'out_indices' in kwargs:
            raise TypeError(f'{owner} reads the blocks its protocol defines; out_indices is '
                            "PEViT's read-out (ViTBaseline: its four levels)")
        if out_channels is not None and not self.projects_channels:
            raise TypeError(f'{owner}: out_channels={out_channels!r}: its levels have the '
                            "trunk's width (embed_dim); ViTDet and STA take out_channels")
        final_norm = self._read_out_norm_flag(owner, final_norm, kwargs)
        prefix_tokens_off_by_default(kwargs)
        super().__init__(arch=arch, pos_embed=pos_embed, final_norm=final_norm, **kwargs)
        self.norm_cfg = check_norm_cfg(owner, 'norm_cfg', norm_cfg) or dict(type='BN')
        self.freeze_vit = check_bool(owner, 'freeze_vit', freeze_vit)
        if vit_autocast not in TRUNK_AUTOCAST:
            raise ValueError(f'{owner}: vit_autocast={vit_autocast!r}; valid: {TRUNK_AUTOCAST}')
        if vit_autocast and not self.freeze_vit:
            raise ValueError(f'{owner}: vit_autocast={vit_autocast!r} runs a frozen trunk '
                             'without autograd: it needs freeze_vit=True')
        self.vit_autocast = vit_autocast
        self.out_channels = (self.embed_dim if out_channels is None
                             else check_int(owner, 'out_channels', out_channels))
        # output norms, named as in the original ViT-Adapter (norm1..norm4, strides 4..32)
        self.norm1, self.norm2, self.norm3, self.norm4 = (
            build_norm_layer(self.norm_cfg, self.out_channels)[1] if self.output_norms
            else nn.Identity() for _ in OUT_STRIDES)
        if self.freeze_vit:
            for part in self.trunk_parts():
                part.requires_grad_(False)

    @staticmethod
    def _read_out_norm_flag(owner: str, final_norm, kwargs: dict) -> bool:
        if 'vit_final_norm' in kwargs:
            if final_norm is not None:
                raise TypeError(f'{owner}: give final_norm only; vit_final_norm is its former '
                                'spelling')
            warnings.warn(f'{owner}: vit_final_norm is deprecated; its name is now final_norm '
                          '(the same flag, shared by every dense protocol)', FutureWarning,
                          stacklevel=3)
            final_norm = kwargs.pop('vit_final_norm')
        return False if final_norm is None else check_bool(owner, 'final_norm', final_norm)

    # ---- what a protocol declares --------------------------------------------
    def output_shape(self) -> Dict[str, dict]:
        """Channels and stride of each output level (detectron2's ``output_shape``)."""
        return {f'p{stride.bit_length() - 1}': dict(channels=self.out_channels, stride=stride)
                for stride in OUT_STRIDES}

    @property
    def padding_constraints(self) -> Dict[str, int]:
        """The input multiple the backbone pads to itself (detectron2's
        ``padding_constraints``): a data preprocessor may pad to it, need not."""
        return dict(size_divisibility=self.size_divisibility)

    def pyramid(self, img: Tensor) -> List[Tensor]:
        """Four maps at strides 4..32 of the padded image (before the output norms)."""
        raise NotImplementedError(f'{type(self).__name__} implements no pyramid()')

    # ---- the frozen trunk ---------------------------------------------------------
    @property
    def feeds_back_into_trunk(self) -> bool:
        """Whether the protocol changes the trunk's tokens (then the trunk keeps
        autograd when frozen: gradients pass through it to the protocol)."""
        return False

    def trunk_parts(self) -> List[nn.Module]:
        return [m for m in (self.patch_embed, self.pos_drop, self.pe, self.blocks, self.norm)
                if m is not None] + [p for p in (self.cls_token, self.reg_token)
                                     if p is not None]

    def trunk_grad(self):
        """No autograd for a frozen trunk that nothing feeds back into. (Two
        context managers rather than one ExitStack: dynamo traces these and
        breaks the graph at an ExitStack.)"""
        if self.freeze_vit and not self.feeds_back_into_trunk:
            return torch.no_grad()
        return nullcontext()

    def trunk_autocast(self, device_type: str):
        """The autocast asked for (``vit_autocast``) around such a trunk."""
        if self.vit_autocast and not self.feeds_back_into_trunk:
            return torch.autocast(device_type, dtype=getattr(torch, self.vit_autocast))
        return nullcontext()

    def train(self, mode: bool = True) -> 'DenseViT':
        super().train(mode)
        if self.freeze_vit:
            for part in self.trunk_parts():
                if isinstance(part, nn.Module):
                    part.eval()
        return self

    def trunk_maps(self, img: Tensor, indices: Sequence[int]) -> List[Tensor]:
        """:meth:`read_out` under the frozen trunk's no-grad and autocast, in the
        protocol's dtype."""
        with self.trunk_grad(), self.trunk_autocast(img.device.type):
            maps = self.read_out(img, indices)
        if self.vit_autocast:  # back to the protocol's dtype
            maps = [m.to(img.dtype) for m in maps]
        return maps

    def simple_pyramid(self, branches: Sequence[nn.Module], maps: Sequence[Tensor],
                       img: Tensor) -> List[Tensor]:
        """Map k through branch k (x4, x2, x1, /2 of a patch-16 map) to the level of
        stride 4..32 of the padded image ``img``. With another patch size the branches
        give strides patch/4 .. 2*patch: those are resampled at the levels' pixels."""
        levels = []
        for branch, feat, stride in zip(branches, maps, OUT_STRIDES):
            level = branch(feat)
            padded = (img.shape[-2] // stride, img.shape[-1] // stride)
            if level.shape[-2:] != padded:
                level = resample_to_level(level, self.patch_size, 16, padded)
            levels.append(level)
        return levels

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        image_size = tuple(img.shape[-2:])
        img = pad_to_multiple(img, self.size_divisibility)
        return normed_outputs(self.pyramid(img), (self.norm1, self.norm2, self.norm3, self.norm4),
                              image_size)


def prefix_tokens_off_by_default(kwargs: dict) -> None:
    """A foundation arch's class and register tokens (DINOv2/v3, EVA-02) stay off
    unless asked for, as the original ViT-Adapter's DINOv2 configs drop the class
    token; their checkpoint tensors are then reported as dropped."""
    kwargs.setdefault('class_token', False)
    kwargs.setdefault('num_register_tokens', 0)


def pad_to_multiple(img: Tensor, multiple: int) -> Tensor:
    height, width = img.shape[-2:]
    # by floor division, not -size % multiple: torch.compile's scalar pass has no
    # Python modulo of a symbolic size (dynamic shapes)
    pad_w = (width + multiple - 1) // multiple * multiple - width
    pad_h = (height + multiple - 1) // multiple * multiple - height
    return F.pad(img, (0, pad_w, 0, pad_h))


def _linear_resampling(length: int, size: int, scale: float, like: Tensor) -> Tensor:
    """(size, length): 1-D linear resampling by ``scale`` (align_corners=False,
    the scale itself rather than length / size), as a matrix: the op's response
    to each unit vector."""
    eye = torch.eye(length, dtype=like.dtype, device=like.device)[None]
    return torch.ops.aten.upsample_linear1d.default(eye, [size], False, scale)[0].t()


def resample_to_level(vit_map: Tensor, patch_size: int, stride: int, shape) -> Tensor:
    """A ViT map resampled bilinearly at a pyramid level's pixel centres: scaled
    by (the map's stride ``patch_size``) / (the level's ``stride``), then
    cropped to the level (a 14-px grid spans a few pixels more than the
    32-padded image; with patch 16 nothing is cropped).

    The numbers of ``F.interpolate(scale_factor=patch_size / stride,
    recompute_scale_factor=False)``, computed as ``rows @ map @ cols.T`` with
    the 1-D resampling matrices: inductor turns ``upsample_bilinear2d``'s
    backward into a scatter (the four ViT-Adapter-T levels at 512^2: 218 ms
    compiled against 36 ms eager, on CPU), and the matmuls are faster than the
    op in eager too (README, benchmark notes). Under autocast they run in its
    dtype, as the convs around them do. Output sizes are floor(grid * patch /
    stride), in integer arithmetic: under dynamic shapes a float of a symbolic
    size breaks torch.compile's scalar handling.
    """
    if patch_size == stride:
        return vit_map[..., :shape[-2], :shape[-1]]
    height, width = vit_map.shape[-2:]
    scale = patch_size / stride
    rows = _linear_resampling(height, height * patch_size // stride, scale, vit_map)
    cols = _linear_resampling(width, width * patch_size // stride, scale, vit_map)
    return rows[:shape[-2]] @ vit_map @ cols[:shape[-1]].t()


def crop_to_image(feat: Tensor, image_size: Tuple[int, int], stride: int) -> Tensor:
    # ceil division in ints (a float would be a symbolic float under dynamic shapes)
    return feat[..., :-(-image_size[0] // stride), :-(-image_size[1] // stride)]


def normed_outputs(pyramid: Sequence[Tensor], norms: Sequence[nn.Module],
                   image_size: Tuple[int, int]) -> Tuple[Tensor, ...]:
    """Each level through its output norm, then cropped to the image (norm
    first: the statistics of BN/GN see the same padded maps in every backbone)."""
    return tuple(crop_to_image(norm(feat), image_size, stride)
                 for feat, norm, stride in zip(pyramid, norms, OUT_STRIDES))
