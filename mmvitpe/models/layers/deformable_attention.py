"""mmcv's multi-scale deformable attention, as ViT-Adapter uses it."""
import torch
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor


class DeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` without its built-in residual, in fp32.

    mmcv returns ``dropout(out) + identity`` with ``identity = query`` by
    default. ViT-Adapter's injector and extractor add their own residuals to
    the *un-normalised* query, so the identity here is zero (mmdet PR #9354 kept
    mmcv's default and added ``LN(query)`` twice). The op runs in fp32 under
    autocast, as the original's ``custom_fwd(cast_inputs=torch.float32)``:
    mmcv's CUDA kernel has no half-precision path. On CPU mmcv uses its
    pure-PyTorch core. Parameter names match the original ``MSDeformAttn``.

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
        super().__init__(embed_dims=embed_dims, num_heads=num_heads, num_levels=num_levels,
                         num_points=num_points, dropout=0., batch_first=True,
                         value_proj_ratio=value_ratio)

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor) -> Tensor:
        with torch.autocast(query.device.type, enabled=False):
            return super().forward(
                query.float(), value=value.float(), identity=query.new_zeros((), dtype=torch.float),
                reference_points=reference_points.float(), spatial_shapes=spatial_shapes,
                level_start_index=level_start_index)
