// Multi-scale deformable attention on CPU: forward and backward in one pass
// over the sampling points each, for float and double.
//
// mmcv ships kernels for CUDA/MLU/NPU only (its CPU path is the grid_sample
// arithmetic); grid_sample's backward reads the channel-first maps one channel
// at a time and recomputes the samples. Here each corner is a row of d
// contiguous values (value is (B, S, heads, d)), and the backward writes the
// value gradient of a (batch, head, level) block from one thread, so no two
// threads touch the same row.
//
// Semantics are grid_sample's (bilinear, zero padding, align_corners=False):
// pixel = location * size - 0.5; a corner outside its level contributes
// nothing, but an in-range corner of weight 0 still passes a location gradient.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

struct Layout {
  int64_t batch, keys, heads, dim, queries, levels, points;
  std::vector<int64_t> height, width, start;
};

Layout layout_of(const Tensor& value, c10::IntArrayRef shapes, const Tensor& loc,
                 const Tensor& attn) {
  TORCH_CHECK(value.dim() == 4, "value must be (B, S, heads, d), got ", value.sizes());
  TORCH_CHECK(loc.dim() == 6 && loc.size(-1) == 2,
              "sampling_locations must be (B, Q, heads, levels, points, 2), got ", loc.sizes());
  TORCH_CHECK(shapes.size() == 2 * static_cast<size_t>(loc.size(3)),
              "spatial_shapes must hold (h, w) for each of the ", loc.size(3), " levels, got ",
              shapes);
  Layout s{value.size(0), value.size(1), value.size(2), value.size(3),
           loc.size(1),   loc.size(3),   loc.size(4),   {}, {}, {}};
  TORCH_CHECK(attn.sizes() == loc.sizes().slice(0, 5),
              "attention_weights must be ", loc.sizes().slice(0, 5), ", got ", attn.sizes());
  int64_t start = 0;
  for (int64_t l = 0; l < s.levels; ++l) {
    s.height.push_back(shapes[2 * l]);
    s.width.push_back(shapes[2 * l + 1]);
    s.start.push_back(start);
    start += shapes[2 * l] * shapes[2 * l + 1];
  }
  TORCH_CHECK(start == s.keys, "spatial_shapes ", shapes, " hold ", start,
              " tokens, value has ", s.keys);
  return s;
}

// The bilinear corners of one sampling point that lie inside its level.
template <typename scalar_t>
struct Corners {
  int count = 0;
  int64_t token[4];
  scalar_t weight[4], dweight_dx[4], dweight_dy[4];

  // location (x, y) in [0, 1]
  Corners(const scalar_t* location, int64_t h, int64_t w) {
    // grid_sample's rounding: to [-1, 1] and back to pixels. It decides which
    // side of a pixel centre a point lands on, and so the one-sided location
    // gradient there.
    const scalar_t x = ((2 * location[0] - 1 + 1) * w - 1) / 2;
    const scalar_t y = ((2 * location[1] - 1 + 1) * h - 1) / 2;
    // also false for NaN; below -1 or at/after the size every corner is outside
    if (!(x >= -1 && y >= -1 && x < w && y < h)) return;
    const scalar_t x0 = std::floor(x), y0 = std::floor(y);
    const scalar_t fx = x - x0, fy = y - y0;
    const int64_t ix = static_cast<int64_t>(x0), iy = static_cast<int64_t>(y0);
    const scalar_t wx[2] = {1 - fx, fx}, wy[2] = {1 - fy, fy};
    for (int cy = 0; cy < 2; ++cy) {
      for (int cx = 0; cx < 2; ++cx) {
        const int64_t px = ix + cx, py = iy + cy;
        if (px < 0 || px >= w || py < 0 || py >= h) continue;
        token[count] = py * w + px;
        weight[count] = wy[cy] * wx[cx];
        dweight_dx[count] = cx ? wy[cy] : -wy[cy];
        dweight_dy[count] = cy ? wx[cx] : -wx[cx];
        ++count;
      }
    }
  }
};

template <typename scalar_t>
void forward_kernel(const Layout& s, const scalar_t* value, const scalar_t* loc,
                    const scalar_t* attn, scalar_t* out) {
  const int64_t d = s.dim, row_stride = s.heads * d;
  at::parallel_for(0, s.batch * s.queries, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bq = begin; bq < end; ++bq) {
      const scalar_t* value_b = value + (bq / s.queries) * s.keys * row_stride;
      for (int64_t h = 0; h < s.heads; ++h) {
        scalar_t* __restrict__ o = out + (bq * s.heads + h) * d;
        for (int64_t l = 0; l < s.levels; ++l) {
          const scalar_t* value_l = value_b + s.start[l] * row_stride + h * d;
          const int64_t point0 = ((bq * s.heads + h) * s.levels + l) * s.points;
          for (int64_t p = point0; p < point0 + s.points; ++p) {
            const Corners<scalar_t> c(loc + 2 * p, s.height[l], s.width[l]);
            for (int k = 0; k < c.count; ++k) {
              const scalar_t a = attn[p] * c.weight[k];
              const scalar_t* __restrict__ v = value_l + c.token[k] * row_stride;
              for (int64_t i = 0; i < d; ++i) o[i] += a * v[i];
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const Layout& s, const scalar_t* grad, const scalar_t* value,
                     const scalar_t* loc, const scalar_t* attn, scalar_t* grad_value,
                     scalar_t* grad_loc, scalar_t* grad_attn) {
  const int64_t d = s.dim, row_stride = s.heads * d;
  // one task per (batch, head, level): the value rows it writes are its own
  at::parallel_for(0, s.batch * s.heads * s.levels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (s.heads * s.levels), h = task / s.levels % s.heads,
                    l = task % s.levels;
      const int64_t offset = (b * s.keys + s.start[l]) * row_stride + h * d;
      const scalar_t* value_l = value + offset;
      scalar_t* grad_value_l = grad_value + offset;
      for (int64_t q = 0; q < s.queries; ++q) {
        const int64_t bqh = (b * s.queries + q) * s.heads + h;
        const scalar_t* __restrict__ g = grad + bqh * d;
        const int64_t point0 = (bqh * s.levels + l) * s.points;
        for (int64_t p = point0; p < point0 + s.points; ++p) {
          const Corners<scalar_t> c(loc + 2 * p, s.height[l], s.width[l]);
          scalar_t grad_a = 0, grad_x = 0, grad_y = 0;
          for (int k = 0; k < c.count; ++k) {
            const scalar_t* __restrict__ v = value_l + c.token[k] * row_stride;
            scalar_t* __restrict__ gv = grad_value_l + c.token[k] * row_stride;
            const scalar_t scale = attn[p] * c.weight[k];
            scalar_t dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t i = 0; i < d; ++i) {
              dot += g[i] * v[i];
              gv[i] += scale * g[i];
            }
            grad_a += c.weight[k] * dot;
            grad_x += c.dweight_dx[k] * dot;
            grad_y += c.dweight_dy[k] * dot;
          }
          grad_attn[p] = grad_a;
          grad_loc[2 * p] = attn[p] * grad_x * s.width[l];
          grad_loc[2 * p + 1] = attn[p] * grad_y * s.height[l];
        }
      }
    }
  });
}

void check_inputs(std::initializer_list<const Tensor*> tensors) {
  const Tensor& first = **tensors.begin();
  for (const Tensor* t : tensors) {
    TORCH_CHECK(t->device().is_cpu(), "ms_deform_attn_cpu takes CPU tensors, got ", t->device());
    TORCH_CHECK(t->scalar_type() == first.scalar_type(), "ms_deform_attn_cpu needs one dtype, got ",
                first.scalar_type(), " and ", t->scalar_type());
  }
}

Tensor forward(const Tensor& value, c10::IntArrayRef spatial_shapes, const Tensor& loc,
               const Tensor& attn) {
  check_inputs({&value, &loc, &attn});
  const Layout s = layout_of(value, spatial_shapes, loc, attn);
  const Tensor v = value.contiguous(), l = loc.contiguous(), a = attn.contiguous();
  Tensor out = at::zeros({s.batch, s.queries, s.heads * s.dim}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    forward_kernel<scalar_t>(s, v.const_data_ptr<scalar_t>(), l.const_data_ptr<scalar_t>(),
                             a.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> backward(const Tensor& grad, const Tensor& value,
                                            c10::IntArrayRef spatial_shapes, const Tensor& loc,
                                            const Tensor& attn) {
  check_inputs({&value, &grad, &loc, &attn});
  const Layout s = layout_of(value, spatial_shapes, loc, attn);
  TORCH_CHECK(grad.numel() == s.batch * s.queries * s.heads * s.dim,
              "grad must be (B, Q, heads * d), got ", grad.sizes());
  const Tensor g = grad.contiguous(), v = value.contiguous(), l = loc.contiguous(),
               a = attn.contiguous();
  Tensor grad_value = at::zeros(value.sizes(), value.options());
  Tensor grad_loc = at::empty(loc.sizes(), loc.options());
  Tensor grad_attn = at::empty(attn.sizes(), attn.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    backward_kernel<scalar_t>(s, g.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                              l.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(),
                              grad_value.mutable_data_ptr<scalar_t>(),
                              grad_loc.mutable_data_ptr<scalar_t>(),
                              grad_attn.mutable_data_ptr<scalar_t>());
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

TORCH_LIBRARY(mmvitpe_cpu, m) {
  m.def("ms_deform_attn(Tensor value, int[] spatial_shapes, Tensor sampling_locations, "
        "Tensor attention_weights) -> Tensor");
  m.def("ms_deform_attn_backward(Tensor grad, Tensor value, int[] spatial_shapes, "
        "Tensor sampling_locations, Tensor attention_weights) -> (Tensor, Tensor, Tensor)");
  m.impl("ms_deform_attn", c10::DispatchKey::CPU, &forward);
  m.impl("ms_deform_attn_backward", c10::DispatchKey::CPU, &backward);
}
