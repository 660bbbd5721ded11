"""Multi-scale deformable attention (Zhu et al., Deformable DETR) as a PyTorch op.

``torch.ops.mmvitpe.ms_deform_attn`` is a ``torch.library`` custom op with a
fake kernel and a registered backward, so ``torch.compile`` keeps it in one
graph (dynamo cannot trace mmcv's ``autograd.Function``, which also iterates
its ``spatial_shapes`` tensor in Python: mmcv #3290). Kernels:

* CUDA: mmcv's compiled kernel when mmcv was built with CUDA ops, else the
  pure-PyTorch one below;
* CPU, float32/float64: this package's C++ kernels (``csrc/ms_deform_attn_cpu.cpp``,
  one pass over the sampling points forward and one backward; mmcv has no CPU
  kernel), compiled by ``torch.utils.cpp_extension`` on first use and cached
  by it; where they cannot be built (no compiler), a warning says why and the
  next path runs;
* CPU, other dtypes: a gather of each sampling point's four bilinear corners
  as rows of ``d`` contiguous values, weighted and summed by ``F.embedding_bag``
  (:func:`ms_deform_attn_gather`), with the backward of :func:`_gradients`;
* other devices: the same arithmetic as mmcv's
  ``multi_scale_deformable_attn_pytorch`` (a ``grid_sample`` per level,
  :func:`ms_deform_attn_grid_sample`).

The pure-PyTorch paths are written here, not imported, because importing
``mmcv.ops`` loads mmcv's compiled extension (``mmcv._ext``), and the ViT core
and backbones must run without it. Their backward (:func:`_gradients`): the
attention weights' gradient from the bilinear samples, the value's and the
sampling locations' from ``grid_sample``'s own backward
(``aten.grid_sampler_2d_backward``) per level.

Under ``torch.export`` / ONNX export / tracing, :func:`multi_scale_deformable_attn`
records the pure-PyTorch arithmetic itself (plain aten ops an exporter knows)
instead of the opaque op.

Shapes: value (B, S, heads, d) with S = sum of h*w over the levels;
``spatial_shapes`` the levels' (h, w) flattened to ``[h0, w0, h1, w1, ...]``
(Python ints, symbolic under dynamic shapes); sampling_locations
(B, Q, heads, levels, points, 2) in [0, 1] (x, y); attention_weights
(B, Q, heads, levels, points). Output (B, Q, heads * d).
"""
import os
import sys
import time
import warnings
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

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


def _bilinear_corners(value: Tensor, shapes: Shapes, sampling_locations: Tensor
                      ) -> Tuple[Tensor, Tensor]:
    """The four bilinear corners of every sampling point, as ``grid_sample``
    (align_corners=False, zero padding) weighs them: their rows in value viewed
    as (B*S*heads, d), and their weights, zero for a corner outside its level.
    Both (B, Q, heads, levels, points, 4), corners in (y, x) order 00, 01, 10, 11."""
    b, keys, heads, _ = value.shape
    device = value.device
    size = sampling_locations.new_tensor([[w, h] for h, w in shapes]).unsqueeze(1)  # (x, y)
    # clamped to [-1, size], where every corner is outside already: keeps the
    # rows of far-off points in range
    pixel = torch.minimum((sampling_locations * size - 0.5).clamp_(min=-1), size)
    low = pixel.floor()
    frac = pixel - low
    axis_weights = torch.stack([(1 - frac) * ((low >= 0) & (low < size)),
                                frac * ((low >= -1) & (low < size - 1))], -1)  # (..., xy, 2)
    bilinear = (axis_weights[..., 1, :, None] * axis_weights[..., 0, None, :]).flatten(-2)
    widths = torch.tensor([w for _, w in shapes], device=device).unsqueeze(1)
    starts = torch.tensor([0] + [h * w for h, w in shapes[:-1]], device=device).cumsum(0)
    low = low.long()
    token = starts.unsqueeze(1) + low[..., 1] * widths + low[..., 0]
    batch_head = (torch.arange(b, device=device).view(b, 1, 1, 1, 1) * (keys * heads)
                  + torch.arange(heads, device=device).view(1, 1, heads, 1, 1))
    steps = torch.stack([torch.zeros_like(widths), torch.ones_like(widths), widths, widths + 1],
                        -1) * heads
    rows = ((token * heads + batch_head).unsqueeze(-1) + steps).clamp_(0, b * keys * heads - 1)
    return rows, bilinear


def ms_deform_attn_gather(value: Tensor, shapes: Shapes, sampling_locations: Tensor,
                          attention_weights: Tensor) -> Tensor:
    """The CPU forward without the compiled kernels: the same numbers as
    :func:`ms_deform_attn_grid_sample`."""
    b, _, heads, d = value.shape
    queries = sampling_locations.shape[1]
    rows, bilinear = _bilinear_corners(value, shapes, sampling_locations)
    bags = b * queries * heads
    weights = (bilinear * attention_weights.unsqueeze(-1)).to(value.dtype)
    out = F.embedding_bag(rows.view(bags, -1), value.reshape(-1, d), mode='sum',
                          per_sample_weights=weights.view(bags, -1))
    return out.view(b, queries, heads * d)


def _bilinear_samples_gather(value: Tensor, shapes: Shapes, sampling_locations: Tensor
                             ) -> Tensor:
    """Every sampling point's bilinear sample, (B*Q*heads, levels*points, d)."""
    b, _, heads, d = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    rows, bilinear = _bilinear_corners(value, shapes, sampling_locations)
    sampled = F.embedding_bag(rows.view(-1, 4), value.reshape(-1, d), mode='sum',
                              per_sample_weights=bilinear.view(-1, 4).to(value.dtype))
    return sampled.view(b * queries * heads, levels * points, d)


def _bilinear_samples_grid_sample(value: Tensor, shapes: Shapes, sampling_locations: Tensor
                                  ) -> Tensor:
    """As :func:`_bilinear_samples_gather`, by a ``grid_sample`` per level."""
    b, _, heads, d = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    sampled = torch.stack([
        F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False)
        for v, g in _per_level(value, shapes, sampling_locations)], -2)  # (B*heads, d, Q, L, P)
    return sampled.view(b, heads, d, queries, levels * points).permute(0, 3, 1, 4, 2).reshape(
        b * queries * heads, levels * points, d)


def ms_deform_attn_grid_sample(value: Tensor, shapes: Shapes, sampling_locations: Tensor,
                               attention_weights: Tensor) -> Tensor:
    """The pure-PyTorch forward: mmcv's ``multi_scale_deformable_attn_pytorch``
    arithmetic (a ``grid_sample`` per level, then the weighted sum)."""
    b, _, heads, d = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    samples = _bilinear_samples_grid_sample(value, shapes, sampling_locations)
    weights = attention_weights.reshape(b * queries * heads, 1, levels * points)
    return torch.bmm(weights, samples).view(b, queries, heads * d)


def _gradients(grad: Tensor, value: Tensor, shapes: Shapes, sampling_locations: Tensor,
              attention_weights: Tensor, bilinear_samples) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of the forward by hand (no autograd inside a kernel): the
    attention weights' from the bilinear samples, the value's and the sampling
    locations' from ``grid_sample``'s backward, per level."""
    b, _, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    sampled = bilinear_samples(value, shapes, sampling_locations)
    grad_w = torch.bmm(sampled, grad.reshape(-1, d, 1)).view(b, q, heads, levels, points)
    grad = grad.transpose(1, 2).reshape(b * heads, d, q, 1)
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels, points)
    grad_values, grad_grids = [], []
    for level, (v, g) in enumerate(_per_level(value, shapes, sampling_locations)):
        grad_v, grad_g = torch.ops.aten.grid_sampler_2d_backward(
            grad * weights[..., level, :], v, g, 0, 0, False, [True, True])
        grad_values.append(grad_v.reshape(b, heads, d, -1).permute(0, 3, 1, 2))
        grad_grids.append(grad_g)
    grad_value = torch.cat(grad_values, dim=1).contiguous()
    # d grid / d location = 2
    grad_loc = (2 * torch.stack(grad_grids, dim=2)).view(b, heads, q, levels, points, 2)
    # contiguous, as the fake kernel says (a compiled backward views them so)
    return grad_value, grad_loc.transpose(1, 2).contiguous(), grad_w


CPU_KERNEL_SOURCE = os.path.join(os.path.dirname(__file__), 'csrc', 'ms_deform_attn_cpu.cpp')


@lru_cache(maxsize=None)
def cpu_kernels() -> Optional[object]:
    """``torch.ops.mmvitpe_cpu`` from :data:`CPU_KERNEL_SOURCE`, compiled on the
    first call of a process where no build of this source is cached
    (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); None,
    with a warning naming the error, when it cannot be built.

    A build (minutes on a busy machine) is announced on stderr: stdout is the
    program's own output. ``cpp_extension`` holds a file lock in the build
    directory, so processes that start together build once and load that build.
    """
    start = time.time()
    try:
        from torch.utils import cpp_extension  # imports setuptools
        # -fopenmp: at::parallel_for is inlined from the OpenMP backend's header
        library = cpp_extension.load(name='mmvitpe_ms_deform_attn_cpu',
                                     sources=[CPU_KERNEL_SOURCE],
                                     extra_cflags=['-O3', '-fopenmp'],
                                     extra_ldflags=['-fopenmp'], is_python_module=False)
    except (ImportError, RuntimeError, OSError) as error:
        warnings.warn(f'mmvitpe: could not build the CPU deformable-attention kernel '
                      f'({CPU_KERNEL_SOURCE}): {error}; the slower embedding_bag path runs '
                      'instead', RuntimeWarning, stacklevel=2)
        return None
    if os.path.getmtime(library) >= start:  # written during this call: a build, not a load
        print(f'mmvitpe: built the CPU deformable-attention kernel in '
              f'{time.time() - start:.0f} s ({library}, cached for later processes)',
              file=sys.stderr, flush=True)
    return torch.ops.mmvitpe_cpu


def _cpu_kernels_for(*tensors: Tensor) -> Optional[object]:
    dtype = tensors[0].dtype
    if dtype in (torch.float32, torch.float64) and all(t.dtype == dtype for t in tensors):
        return cpu_kernels()
    return None


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


@ms_deform_attn.register_kernel('cpu')
def _forward_cpu(value, spatial_shapes, sampling_locations, attention_weights):
    kernels = _cpu_kernels_for(value, sampling_locations, attention_weights)
    if kernels is not None:
        return kernels.ms_deform_attn(value, spatial_shapes, sampling_locations,
                                      attention_weights)
    return ms_deform_attn_gather(value, _pairs(spatial_shapes), sampling_locations,
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
    return _gradients(grad, value, _pairs(spatial_shapes), sampling_locations, attention_weights,
                     _bilinear_samples_grid_sample)


@ms_deform_attn_backward.register_kernel('cpu')
def _backward_cpu(grad, value, spatial_shapes, sampling_locations, attention_weights):
    kernels = _cpu_kernels_for(grad, value, sampling_locations, attention_weights)
    if kernels is not None:
        return kernels.ms_deform_attn_backward(grad, value, spatial_shapes, sampling_locations,
                                               attention_weights)
    return _gradients(grad, value, _pairs(spatial_shapes), sampling_locations, attention_weights,
                     _bilinear_samples_gather)


@ms_deform_attn_backward.register_kernel('cuda')
def _backward_cuda(grad, value, spatial_shapes, sampling_locations, attention_weights):
    ext, shapes = _mmcv_cuda_ext(), _pairs(spatial_shapes)
    if ext is None:
        return _gradients(grad, value, shapes, sampling_locations, attention_weights,
                         _bilinear_samples_grid_sample)
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
