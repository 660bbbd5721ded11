"""What the dense backbones share: a pyramid of patch tokens, and any input size.

The image is zero-padded at the bottom/right to a size every level divides, and
each output level is cropped back to the part covering the real image, so the
levels stay aligned with it.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# strides of the four output levels, as mmdet's FPN and mmseg's UperNet expect
OUT_STRIDES = (4, 8, 16, 32)


def prefix_tokens_off_by_default(kwargs: dict) -> None:
    """A foundation arch's class and register tokens (DINOv2/v3, EVA-02) stay off
    unless asked for, as the original ViT-Adapter's DINOv2 configs drop the class
    token; their checkpoint tensors are then reported as dropped. With
    ``class_token=True`` / ``num_register_tokens=N`` they run through the ViT
    blocks, and the pyramid is built from the patch tokens."""
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


def tokens_to_map(tokens: Tensor, grid: Tuple[int, int]) -> Tensor:
    """(B, H*W, D) patch tokens -> (B, D, H, W), a view (channels-last strides)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def normed_outputs(pyramid: Sequence[Tensor], norms: Sequence[nn.Module],
                   image_size: Tuple[int, int]) -> Tuple[Tensor, ...]:
    """Each level through its output norm, then cropped to the image (norm
    first: the statistics of BN/GN see the same padded maps in every backbone)."""
    return tuple(crop_to_image(norm(feat), image_size, stride)
                 for feat, norm, stride in zip(pyramid, norms, OUT_STRIDES))
