"""Multi-scale deformable attention (Zhu et al., Deformable DETR) as a PyTorch op.

``torch.ops.mmvitpe.ms_deform_attn`` is a ``torch.library`` custom op with a
fake kernel and a registered backward, so ``torch.compile`` keeps it in one
graph (dynamo cannot trace mmcv's ``autograd.Function``, which also iterates
its ``spatial_shapes`` tensor in Python: mmcv #3290). Kernels:

* CUDA: mmcv's compiled kernel when mmcv was built with CUDA ops, else the
  pure-PyTorch one below;
* every other device: the pure-PyTorch implementation here, the same
  arithmetic as mmcv's ``multi_scale_deformable_attn_pytorch`` (a
  ``grid_sample`` per level). It is written here, not imported, because
  importing ``mmcv.ops`` loads mmcv's compiled extension (``mmcv._ext``), and
  the ViT core and backbones must run without it. Its backward is
  ``grid_sample``'s own (``aten.grid_sampler_2d_backward``), per level.

Under ``torch.export`` / ONNX export / tracing, :func:`multi_scale_deformable_attn`
records the pure-PyTorch arithmetic itself (plain aten ops an exporter knows)
instead of the opaque op.

Shapes: value (B, S, heads, d) with S = sum of h*w over the levels;
``spatial_shapes`` the levels' (h, w) flattened to ``[h0, w0, h1, w1, ...]``
(Python ints, symbolic under dynamic shapes); sampling_locations
(B, Q, heads, levels, points, 2) in [0, 1] (x, y); attention_weights
(B, Q, heads, levels, points). Output (B, Q, heads * d).
"""
from functools import lru_cache
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

Shapes = Sequence[Tuple[int, int]]


def _pairs(flat: Sequence[int]) -> List[Tuple[int, int]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _per_level(value: Tensor, shapes: Shapes, sampling_locations: Tensor):
    """Per level: the value map (B*heads, d, h, w) and its grid (B*heads, Q, points, 2)
    in grid_sample's [-1, 1] coordinates."""
    b, _, heads, d = value.shape
    grids = 2 * sampling_locations - 1
    values = value.split([h * w for h, w in shapes], dim=1)
    for level, (h, w) in enumerate(shapes):
        yield (values[level].flatten(2).transpose(1, 2).reshape(b * heads, d, h, w),
               grids[:, :, :, level].transpose(1, 2).flatten(0, 1))


def ms_deform_attn_grid_sample(value: Tensor, shapes: Shapes, sampling_locations: Tensor,
                               attention_weights: Tensor) -> Tensor:
    """The pure-PyTorch forward (mmcv's ``multi_scale_deformable_attn_pytorch``)."""
    b, _, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    sampled = [F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False)
               for v, g in _per_level(value, shapes, sampling_locations)]
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(b, heads * d, q)
    return out.transpose(1, 2).contiguous()


def _grid_sample_backward(grad: Tensor, value: Tensor, shapes: Shapes,
                          sampling_locations: Tensor, attention_weights: Tensor
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`ms_deform_attn_grid_sample` by hand (no autograd inside a kernel)."""
    b, _, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    grad = grad.transpose(1, 2).reshape(b * heads, d, q, 1)
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels, points)
    grad_values, grad_grids, grad_weights = [], [], []
    for level, (v, g) in enumerate(_per_level(value, shapes, sampling_locations)):
        sampled = F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False)
        grad_weights.append((grad * sampled).sum(1))  # (B*heads, Q, points)
        grad_v, grad_g = torch.ops.aten.grid_sampler_2d_backward(
            grad * weights[..., level, :], v, g, 0, 0, False, [True, True])
        grad_values.append(grad_v.reshape(b, heads, d, -1).permute(0, 3, 1, 2))
        grad_grids.append(grad_g)
    grad_value = torch.cat(grad_values, dim=1).contiguous()
    # d grid / d location = 2
    grad_loc = (2 * torch.stack(grad_grids, dim=2)).view(b, heads, q, levels, points, 2)
    grad_w = torch.stack(grad_weights, dim=2).view(b, heads, q, levels, points)
    # contiguous, as the fake kernel says (a compiled backward views them so)
    return grad_value, grad_loc.transpose(1, 2).contiguous(), grad_w.transpose(1, 2).contiguous()


@lru_cache(maxsize=None)
def _mmcv_cuda_ext():
    """mmcv's compiled extension when it has CUDA ops, else None."""
    try:
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['ms_deform_attn_forward', 'ms_deform_attn_backward',
                                           'get_compiling_cuda_version'])
    except (ImportError, AssertionError):
        return None
    return ext if ext.get_compiling_cuda_version() != 'not available' else None


def _mmcv_layout(shapes: Shapes, device) -> Tuple[Tensor, Tensor]:
    spatial = torch.tensor(shapes, dtype=torch.long, device=device)
    sizes = spatial.prod(1)
    return spatial, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


MMCV_IM2COL_STEP = 64  # mmcv MultiScaleDeformableAttention's default


@torch.library.custom_op('mmvitpe::ms_deform_attn', mutates_args=())
def ms_deform_attn(value: Tensor, spatial_shapes: Sequence[int], sampling_locations: Tensor,
                   attention_weights: Tensor) -> Tensor:
    """See the module docstring."""
    return ms_deform_attn_grid_sample(value, _pairs(spatial_shapes), sampling_locations,
                                      attention_weights)


@ms_deform_attn.register_kernel('cuda')
def _forward_cuda(value, spatial_shapes, sampling_locations, attention_weights):
    ext, shapes = _mmcv_cuda_ext(), _pairs(spatial_shapes)
    if ext is None:
        return ms_deform_attn_grid_sample(value, shapes, sampling_locations, attention_weights)
    spatial, start = _mmcv_layout(shapes, value.device)
    return ext.ms_deform_attn_forward(value.contiguous(), spatial, start,
                                      sampling_locations.contiguous(),
                                      attention_weights.contiguous(),
                                      im2col_step=MMCV_IM2COL_STEP)


@ms_deform_attn.register_fake
def _forward_fake(value, spatial_shapes, sampling_locations, attention_weights):
    b, _, heads, d = value.shape
    return value.new_empty(b, sampling_locations.shape[1], heads * d)


@torch.library.custom_op('mmvitpe::ms_deform_attn_backward', mutates_args=())
def ms_deform_attn_backward(grad: Tensor, value: Tensor, spatial_shapes: Sequence[int],
                            sampling_locations: Tensor, attention_weights: Tensor
                            ) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients w.r.t. value, sampling_locations and attention_weights."""
    return _grid_sample_backward(grad, value, _pairs(spatial_shapes), sampling_locations,
                                 attention_weights)


@ms_deform_attn_backward.register_kernel('cuda')
def _backward_cuda(grad, value, spatial_shapes, sampling_locations, attention_weights):
    ext, shapes = _mmcv_cuda_ext(), _pairs(spatial_shapes)
    if ext is None:
        return _grid_sample_backward(grad, value, shapes, sampling_locations, attention_weights)
    spatial, start = _mmcv_layout(shapes, value.device)
    grads = [t.new_zeros(t.shape) for t in (value, sampling_locations, attention_weights)]
    ext.ms_deform_attn_backward(value.contiguous(), spatial, start,
                                sampling_locations.contiguous(), attention_weights.contiguous(),
                                grad.contiguous(), *grads, im2col_step=MMCV_IM2COL_STEP)
    return tuple(grads)


@ms_deform_attn_backward.register_fake
def _backward_fake(grad, value, spatial_shapes, sampling_locations, attention_weights):
    return tuple(t.new_empty(t.shape) for t in (value, sampling_locations, attention_weights))


def _setup_context(ctx, inputs, output):
    value, spatial_shapes, sampling_locations, attention_weights = inputs
    ctx.spatial_shapes = spatial_shapes
    ctx.save_for_backward(value, sampling_locations, attention_weights)


def _backward(ctx, grad):
    value, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_loc, grad_w = ms_deform_attn_backward(
        grad, value, ctx.spatial_shapes, sampling_locations, attention_weights)
    return grad_value, None, grad_loc, grad_w


ms_deform_attn.register_autograd(_backward, setup_context=_setup_context)


def _exporting() -> bool:
    return (torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing())


def multi_scale_deformable_attn(value: Tensor, spatial_shapes: Shapes,
                                sampling_locations: Tensor, attention_weights: Tensor,
                                ) -> Tensor:
    """The op, or its pure-PyTorch arithmetic while exporting or tracing (an
    exporter records those aten ops; it has no translation of a custom op).

    Args:
        spatial_shapes: the levels' (h, w), as ints.
    """
    shapes = [(h, w) for h, w in spatial_shapes]
    if _exporting():
        return ms_deform_attn_grid_sample(value, shapes, sampling_locations, attention_weights)
    return ms_deform_attn(value, [s for hw in shapes for s in hw], sampling_locations,
                          attention_weights)
