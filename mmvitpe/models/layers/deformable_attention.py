"""Multi-scale deformable attention as ViT-Adapter uses it, on this package's op."""
import math
from typing import Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, xavier_init
from torch import Tensor, nn

from mmvitpe.ops import multi_scale_deformable_attn


class DeformableAttention(BaseModule):
    """mmcv's ``MultiScaleDeformableAttention`` (batch first) without its residual, in fp32.

    The same parameters, names, initialisation and arithmetic as mmcv's module,
    on ``torch.ops.mmvitpe.ms_deform_attn`` (mmvitpe/ops), which
    ``torch.compile`` and the exporters can trace and which needs no compiled
    mmcv. mmcv returns ``dropout(out) + identity`` with ``identity = query`` by
    default; ViT-Adapter's injector and extractor add their own residuals to
    the *un-normalised* query, so there is none here (mmdet PR #9354 kept
    mmcv's default and added ``LN(query)`` twice). The op runs in fp32 under
    autocast, as the original's ``custom_fwd(cast_inputs=torch.float32)``:
    mmcv's CUDA kernel has no half-precision path. In a ``.half()`` /
    ``.bfloat16()`` model its parameters stay fp32 and its output comes back in
    the model's dtype; a ``.double()`` model computes it in fp64. Parameter
    names match the original ``MSDeformAttn``.

    Args:
        embed_dims: Query width.
        num_heads: Heads.
        num_levels: Key/value levels.
        num_points: Sampling points per head and level.
        value_ratio: value/output projection width / embed_dims (ViT-Adapter's
            ``deform_ratio``).
    """

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int,
                 value_ratio: float = 1.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_levels, self.num_points = num_levels, num_points
        # mmcv's order of creation (and so of the state dict)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        value_width = int(embed_dims * value_ratio)
        self.value_proj = nn.Linear(embed_dims, value_width)
        self.output_proj = nn.Linear(value_width, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Deformable DETR's init, as mmcv's: each head's points start on a ray
        at 1, 2, ... pixels in its own direction; uniform attention."""
        constant_init(self.sampling_offsets, 0.)
        thetas = torch.arange(self.num_heads, dtype=torch.float32,
                              device=self.sampling_offsets.weight.device) * (
                                  2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(
            self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid *= torch.arange(1, self.num_points + 1, dtype=grid.dtype,
                             device=grid.device)[:, None]
        self.sampling_offsets.bias.data = grid.view(-1).to(self.sampling_offsets.bias.dtype)
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True  # as mmcv: a parent's init_weights() does not redo it

    def _apply(self, fn, recurse=True):
        # dtype policy: .half()/.bfloat16() leave this module's parameters in fp32, the
        # precision it computes in; .double() converts them (it then computes in fp64)
        super()._apply(fn, recurse)
        for param in self.parameters():
            if param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.float()
        return self

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor,
                spatial_shapes: Sequence[Tuple[int, int]]) -> Tensor:
        """
        Args:
            query: (B, Q, embed_dims).
            value: (B, S, embed_dims), the levels' tokens concatenated.
            reference_points: (B or 1, Q, 1, 2), (x, y) in [0, 1].
            spatial_shapes: (h, w) of each level, ints, with sum of h*w = S.
        """
        tokens = sum(h * w for h, w in spatial_shapes)
        if tokens != value.shape[1]:
            raise ValueError(f'spatial_shapes {list(spatial_shapes)} hold {tokens} tokens, '
                             f'value has {value.shape[1]}')
        if query.shape[0] == 0:  # nothing to attend from (view(-1) would be ambiguous)
            return query.new_zeros(query.shape)
        dtype = self.value_proj.weight.dtype
        with torch.autocast(query.device.type, enabled=False):
            out = self._attend(query.to(dtype), value.to(dtype), reference_points.to(dtype),
                               spatial_shapes)
        # under autocast the fp32 result goes on as it is; otherwise in the caller's dtype
        return out if torch.is_autocast_enabled(query.device.type) else out.to(query.dtype)

    def _attend(self, query: Tensor, value: Tensor, reference_points: Tensor,
                spatial_shapes: Sequence[Tuple[int, int]]) -> Tensor:
        b, q, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value).view(b, value.shape[1], heads, -1)
        offsets = self.sampling_offsets(query).view(b, q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, q, heads, levels * points).softmax(-1)
        # offsets are in pixels of each level: divided by its (w, h) one level at a time,
        # so the sizes stay ints (symbolic under dynamic shapes), never a tensor
        offsets = torch.stack([torch.stack([offsets[:, :, :, i, :, 0] / w,
                                            offsets[:, :, :, i, :, 1] / h], -1)
                               for i, (h, w) in enumerate(spatial_shapes)], 3)
        locations = reference_points[:, :, None, :, None, :] + offsets
        out = multi_scale_deformable_attn(value, spatial_shapes, locations,
                                          weights.view(b, q, heads, levels, points))
        return self.output_proj(out)
