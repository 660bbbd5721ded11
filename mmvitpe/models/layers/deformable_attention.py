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
    mmcv's CUDA kernel has no half-precision path. In a ``.half()`` /
    ``.bfloat16()`` model its parameters stay fp32 and its output comes back in
    the model's dtype; a ``.double()`` model computes it in fp64. On CPU mmcv uses its
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

    def _apply(self, fn, recurse=True):
        # dtype policy: .half()/.bfloat16() leave this module's parameters in fp32, the
        # precision it computes in; .double() converts them (it then computes in fp64)
        super()._apply(fn, recurse)
        for param in self.parameters():
            if param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.float()
        return self

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor) -> Tensor:
        if query.shape[0] == 0:  # mmcv cannot reshape an empty batch (its -1 is ambiguous)
            return query.new_zeros(query.shape)
        dtype = self.value_proj.weight.dtype
        with torch.autocast(query.device.type, enabled=False):
            out = super().forward(
                query.to(dtype), value=value.to(dtype), identity=query.new_zeros((), dtype=dtype),
                reference_points=reference_points.to(dtype), spatial_shapes=spatial_shapes,
                level_start_index=level_start_index)
        # under autocast the fp32 result goes on as it is; otherwise in the caller's dtype
        return out if torch.is_autocast_enabled(query.device.type) else out.to(query.dtype)
