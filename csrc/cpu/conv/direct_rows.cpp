// Shapes and bounds of the direct_rows kernels, compiled for the baseline ISA
// so that the AVX2/AVX-512 builds of direct_rows_impl.h share no inline code.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cnnkit/conv.h"
#include "cnnkit/errors.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {

Conv2dParams transposed_params(const Conv2dParams& p) {
  Conv2dParams t = p;
  t.in_channels = p.out_channels;
  t.in_h = p.out_h;
  t.in_w = p.out_w;
  t.out_channels = p.in_channels;
  const int64_t span_h = p.dilation_h * (p.kernel_h - 1), span_w = p.dilation_w * (p.kernel_w - 1);
  t.pad_top = span_h - p.pad_top;
  t.pad_bottom = span_h - p.pad_bottom;
  t.pad_left = span_w - p.pad_left;
  t.pad_right = span_w - p.pad_right;
  t.out_h = p.in_h;
  t.out_w = p.in_w;
  return t;
}

namespace {

using WeightGradFn = void (*)(const Conv2dParams&, const WeightGradRowsChunk&, float*, bool);

// Packed floats per chunk of images (16 MiB): one image at least.
constexpr int64_t kWeightGradRowsBudgetFloats = int64_t{4} << 20;

// dw by the direct_rows weight-gradient kernel, images packed a chunk at a
// time. Returns false, leaving dw to the caller, when the input holds a NaN or
// an infinity: the extended rows multiply the zero dy of dropped columns with
// inputs that no valid output reads, and 0 * inf would add a NaN that the
// definition (and im2col) does not have.
bool weight_grad_rows(WeightGradFn kernel, int64_t lanes, const Conv2dParams& p, const float* dy,
                      const float* x, float* dw) {
  if (p.batch == 0 || p.out_plane() == 0 || !direct_rows_fits(p)) return false;
  const DirectRowsPlan rows = plan_direct_rows(p, lanes);
  const int64_t C = p.in_channels, K = p.out_channels, H = p.in_h, W = p.in_w;
  const int64_t Ho = p.out_h, Wo = p.out_w, Wp = rows.padded_w;
  const int64_t x_image = checked_mul(C, rows.plane, "conv2d packed input");
  const int64_t dy_image = checked_mul(K, rows.ext_stride, "conv2d packed grad_output");
  const int64_t per_image = x_image + dy_image;
  const int64_t images = std::clamp<int64_t>(kWeightGradRowsBudgetFloats / per_image, 1, p.batch);
  // Per-thread workspaces rather than fresh vectors: a fresh 7 MB buffer cost
  // a serial zero fill and a page fault per 4 KiB on every call (about 8% of
  // the weight gradient of 64x32x14x14 k64 5x5). The packing below writes
  // every float of both buffers, padding included. The kernel's threads use
  // the Scratch0 slot, so these two use others.
  const int64_t xp_floats = checked_mul(images, x_image, "conv2d packed input") + rows.slack;
  float* xp = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(xp_floats));
  float* dyx = thread_workspace(WorkspaceSlot::Scratch1,
                                static_cast<size_t>(checked_mul(images, dy_image, "conv2d packed grad_output")));
  std::fill(xp + images * x_image, xp + xp_floats, 0.0f);  // slack read past the last plane
  std::vector<char> finite(static_cast<size_t>(images));
  const int64_t Hp = rows.plane / Wp;
  for (int64_t n0 = 0; n0 < p.batch; n0 += images) {
    const int64_t m = std::min(images, p.batch - n0);
    parallel_for(m, per_image, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        // v - v is NaN exactly for NaN and infinities.
        float probe = 0.0f;
        for (int64_t c = 0; c < C; ++c) {
          float* plane = xp + i * x_image + c * rows.plane;
          for (int64_t row = 0; row < Hp; ++row) {
            float* dst = plane + row * Wp;
            const int64_t ih = row - p.pad_top;
            if (ih < 0 || ih >= H) {
              std::fill(dst, dst + Wp, 0.0f);
              continue;
            }
            const float* src = x + (((n0 + i) * C + c) * H + ih) * W;
            std::fill(dst, dst + p.pad_left, 0.0f);
            for (int64_t iw = 0; iw < W; ++iw) {
              dst[p.pad_left + iw] = src[iw];
              probe += src[iw] - src[iw];
            }
            std::fill(dst + p.pad_left + W, dst + Wp, 0.0f);
          }
        }
        finite[static_cast<size_t>(i)] = probe == 0.0f;
        for (int64_t o = 0; o < K; ++o) {
          float* ext = dyx + i * dy_image + o * rows.ext_stride;
          for (int64_t oh = 0; oh < Ho; ++oh) {
            std::memcpy(ext + oh * Wp, dy + (((n0 + i) * K + o) * Ho + oh) * Wo, static_cast<size_t>(Wo) * sizeof(float));
            // The dropped columns between rows, and after the last row up to ext_stride.
            std::fill(ext + oh * Wp + Wo, ext + (oh + 1 < Ho ? (oh + 1) * Wp : rows.ext_stride), 0.0f);
          }
        }
      }
    });
    for (int64_t i = 0; i < m; ++i) {
      if (!finite[static_cast<size_t>(i)]) return false;
    }
    kernel(p, {m, Wp, rows.plane, rows.ext_stride, xp, dyx}, dw, n0 > 0);
  }
  return true;
}

// dw by the direct_rows weight gradient (im2col + GEMM where it declines), dx
// and db as every fast backward computes them.
void backward_direct_rows(WeightGradFn weight_grad, int64_t lanes,
                          const Conv2dParams& p, const float* dy, const float* x, const float* w,
                          float* dx, float* dw, float* db) {
  if (dx != nullptr) conv2d_input_grad_transposed(p, dy, w, dx);
  if (dw != nullptr && !weight_grad_rows(weight_grad, lanes, p, dy, x, dw)) conv2d_weight_grad(p, dy, x, dw);
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace

bool direct_rows_fits(const Conv2dParams& p) {
  return p.stride_h == 1 && p.stride_w == 1 && direct_cvec_fits(p);
}

// dx as the direct forward of the flipped kernel over dy, by whichever direct
// kernel the forward dispatch picks for those shapes (direct_walk for
// 64->32 5x5 on 14x14: dx 4.8 -> 3.6 ms, 2 threads).
void conv2d_input_grad_transposed(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Conv2dParams t = transposed_params(p);
  // direct_walk and direct_cvec pack w flipped as they read it (512 -> 512
  // channels 3x3 on 7x7: the serial flip below and their packing of its copy
  // were 40% of the input gradient).
  if (conv2d_forward_flipped(t, dy, w, dx)) return;
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t R = p.kernel_h, S = p.kernel_w;
  // wt[g*cg + c][o][r][s] = w[g*kg + o][c][R-1-r][S-1-s]: the weights are small next to dy.
  float* wt = thread_workspace(WorkspaceSlot::FlippedWeights,
                               static_cast<size_t>(checked_mul(p.out_channels, p.reduction(), "conv2d weight")));
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t o = 0; o < kg; ++o)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            wt[(((g * cg + c) * kg + o) * R + r) * S + s] =
                w[(((g * kg + o) * cg + c) * R + (R - 1 - r)) * S + (S - 1 - s)];
  conv2d_forward(t, dy, wt, nullptr, dx, ConvAlgo::Direct);
}

bool direct_rows_backward_fits(const Conv2dParams& p) {
  if (p.stride_h != 1 || p.stride_w != 1) return false;
  const int64_t span_h = p.dilation_h * (p.kernel_h - 1), span_w = p.dilation_w * (p.kernel_w - 1);
  if (p.pad_top > span_h || p.pad_bottom > span_h || p.pad_left > span_w || p.pad_right > span_w) {
    return false;
  }
  return direct_rows_fits(transposed_params(p));
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct_rows_avx2) {
  backward_direct_rows(conv2d_weight_grad_rows_avx2, 8, p, dy, x, w, dx, dw, db);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct_rows_avx512) {
  backward_direct_rows(conv2d_weight_grad_rows_avx512, 16, p, dy, x, w, dx, dw, db);
}

DirectRowsPlan plan_direct_rows(const Conv2dParams& p, int64_t tile_floats) {
  DirectRowsPlan plan{};
  plan.group_in_channels = p.group_in_channels();
  plan.group_out_channels = p.group_out_channels();
  plan.reduction = p.reduction();
  // Neighbouring rows share their horizontal padding: a row's zeros past its
  // right edge are also the next row's zeros before its left edge, so a row
  // needs max(pad_left, pad_right) of them, not the sum, and no more extended
  // positions than the output row (the input gradient of LeNet c2, dy 10 wide
  // padded 4 and 4: 14 positions per row where 18 were computed, 4 dropped).
  // The last row's reads past its right padding run into the next plane by
  // at most min(pad_left, pad_right) floats, and the last tile's by up to a
  // tile more: the next plane's first row starts with pad_left zeros, and the
  // last plane is followed by that many. (One tile of them was too few where
  // the padding is wider than that: the input gradient of a 10-wide kernel
  // with dilation 2 over a 2-wide dy, padded 18 and 18, read 9 floats past.)
  plan.padded_w = std::max(p.in_w + std::max(p.pad_left, p.pad_right), p.out_w);
  plan.plane = (p.in_h + p.pad_top + p.pad_bottom) * plan.padded_w;
  plan.ext_len = (p.out_h - 1) * plan.padded_w + p.out_w;
  plan.ext_stride = (plan.ext_len + tile_floats - 1) / tile_floats * tile_floats;
  plan.slack = tile_floats + std::min(p.pad_left, p.pad_right);
  plan.input_floats = plan.group_in_channels * plan.plane + plan.slack;
  plan.items = p.batch * p.groups;
  plan.work_per_item = work_per_item(plan.items, {plan.group_out_channels, plan.reduction, plan.ext_len});
  return plan;
}

void copy_into_padded(const Conv2dParams& p, const float* x_group, int64_t channels, float* padded,
                      int64_t plane, int64_t padded_w) {
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t ih = 0; ih < p.in_h; ++ih) {
      std::memcpy(padded + c * plane + (ih + p.pad_top) * padded_w + p.pad_left,
                  x_group + (c * p.in_h + ih) * p.in_w, static_cast<size_t>(p.in_w) * sizeof(float));
    }
  }
}

}  // namespace cnnkit
