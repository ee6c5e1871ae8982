// Direct convolution: no column buffer. Each work item is one row of the
// result (an output row forward, an input-gradient row backward) or one
// (out, in) weight-gradient slice, so threads never write to the same place.
// The innermost loops run along a row of width with the padding bounds
// hoisted out (tap_range), so they are branch-free and vectorise for stride 1.
#include <algorithm>

#include "core/parallel.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t R = p.kernel_h, S = p.kernel_w, W = p.in_w, Wo = p.out_w;
  const int64_t rows = p.batch * p.out_channels * p.out_h;
  // The output row stays in L1 while every (c, r, s) tap is added to it.
  parallel_for(rows, work_per_item(rows, {p.reduction(), Wo}), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / p.out_h, oh = row % p.out_h;
      const int64_t n = plane / p.out_channels, o = plane % p.out_channels;
      float* yrow = y + row * Wo;
      std::fill(yrow, yrow + Wo, bias != nullptr ? bias[o] : 0.0f);
      const float* xg = x + (n * p.in_channels + o / kg * cg) * p.in_plane();
      const float* wo = w + o * p.reduction();
      for (int64_t c = 0; c < cg; ++c) {
        for (int64_t r = 0; r < R; ++r) {
          const int64_t ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          if (ih < 0 || ih >= p.in_h) continue;
          const float* xrow = xg + (c * p.in_h + ih) * W;
          for (int64_t s = 0; s < S; ++s) {
            const int64_t off = s * p.dilation_w - p.pad_left;
            const TapRange t = tap_range(off, p.stride_w, W, Wo);
            const float wv = wo[(c * R + r) * S + s];
            if (p.stride_w == 1) {
              for (int64_t ow = t.lo; ow < t.hi; ++ow) yrow[ow] += wv * xrow[ow + off];
            } else {
              for (int64_t ow = t.lo; ow < t.hi; ++ow) yrow[ow] += wv * xrow[ow * p.stride_w + off];
            }
          }
        }
      }
    }
  });
}

namespace {

// dx row (n, c, ih): every (o, r) whose output row oh reads input row ih adds
// its dy row, scattered along the width by stride.
void input_grad_direct(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t R = p.kernel_h, S = p.kernel_w, W = p.in_w, Wo = p.out_w;
  const int64_t rows = p.batch * p.in_channels * p.in_h;
  parallel_for(rows, work_per_item(rows, {kg, R, S, Wo}), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / p.in_h, ih = row % p.in_h;
      const int64_t n = plane / p.in_channels, c = plane % p.in_channels;
      const int64_t g = c / cg;
      float* dxrow = dx + row * W;
      std::fill(dxrow, dxrow + W, 0.0f);
      for (int64_t o = g * kg; o < (g + 1) * kg; ++o) {
        const float* wc = w + (o * cg + c - g * cg) * R * S;
        for (int64_t r = 0; r < R; ++r) {
          const int64_t th = ih + p.pad_top - r * p.dilation_h;
          if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= p.out_h) continue;
          const float* dyrow = dy + ((n * p.out_channels + o) * p.out_h + th / p.stride_h) * Wo;
          for (int64_t s = 0; s < S; ++s) {
            const int64_t off = s * p.dilation_w - p.pad_left;
            const TapRange t = tap_range(off, p.stride_w, W, Wo);
            const float wv = wc[r * S + s];
            if (p.stride_w == 1) {
              for (int64_t ow = t.lo; ow < t.hi; ++ow) dxrow[ow + off] += wv * dyrow[ow];
            } else {
              for (int64_t ow = t.lo; ow < t.hi; ++ow) dxrow[ow * p.stride_w + off] += wv * dyrow[ow];
            }
          }
        }
      }
    }
  });
}

// dw[o, c, :, :]: each tap's sum over batch and output positions.
void weight_grad_direct(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t R = p.kernel_h, S = p.kernel_w, W = p.in_w, Wo = p.out_w;
  const int64_t slices = p.out_channels * cg;
  parallel_for(slices, work_per_item(slices, {R, S, p.batch, p.out_plane()}), [&](int64_t begin, int64_t end) {
    for (int64_t slice = begin; slice < end; ++slice) {
      const int64_t o = slice / cg, c = o / kg * cg + slice % cg;
      for (int64_t r = 0; r < R; ++r) {
        const TapRange th = tap_range(r * p.dilation_h - p.pad_top, p.stride_h, p.in_h, p.out_h);
        for (int64_t s = 0; s < S; ++s) {
          const int64_t off = s * p.dilation_w - p.pad_left;
          const TapRange tw = tap_range(off, p.stride_w, W, Wo);
          float acc = 0.0f;
          for (int64_t n = 0; n < p.batch; ++n) {
            const float* dyp = dy + (n * p.out_channels + o) * p.out_plane();
            const float* xp = x + (n * p.in_channels + c) * p.in_plane();
            for (int64_t oh = th.lo; oh < th.hi; ++oh) {
              const float* dyrow = dyp + oh * Wo;
              const float* xrow = xp + (oh * p.stride_h + r * p.dilation_h - p.pad_top) * W;
              for (int64_t ow = tw.lo; ow < tw.hi; ++ow) {
                acc += dyrow[ow] * xrow[ow * p.stride_w + off];
              }
            }
          }
          dw[slice * R * S + r * S + s] = acc;
        }
      }
    }
  });
}

}  // namespace

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct) {
  if (dx != nullptr) input_grad_direct(p, dy, w, dx);
  if (dw != nullptr) weight_grad_direct(p, dy, x, dw);
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace cnnkit
