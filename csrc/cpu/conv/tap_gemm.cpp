// conv2d as one GEMM per kernel tap over the output positions that tap reaches
// inside the input, the whole batch side by side. im2col writes a zero for
// every tap that falls in the padding and multiplies it: on a 2x2 plane with a
// 3x3 kernel and padding 1 that is 5 taps of 9, on 4x4 planes 31% of them
// (vgg11's last layers). Per tap (kh, kw), the output rows and columns it
// reaches form a rectangle; its positions over all images are the columns:
//   forward:         P = W_t . X_t, added into y (which starts as the bias);
//   input gradient:  dX_t = W_t^T . dY_t, added into dx (which starts at 0);
//   weight gradient: dW_t = dY_t . X_t^T, stored into w's tap (kh, kw);
// W_t is the kg x cg matrix of tap (kh, kw) (the weights are laid out tap by
// tap once per call), X_t the cg x n input values it reads and dY_t the kg x n
// gradients of the positions it feeds. The taps go
// one after another (a fixed order of sums, whatever the thread count); the
// gathers, scatters and GEMMs inside each are threaded.
#include <algorithm>

#include "cnnkit/gemm.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// The positions [first, end) along one axis whose tap `t` lands inside the
// input: 0 <= o * stride - pad + t * dilation < size.
struct Span {
  int64_t first, end;
  int64_t count() const { return end > first ? end - first : 0; }
};

Span reached(int64_t t, int64_t stride, int64_t pad, int64_t dilation, int64_t size, int64_t out) {
  const int64_t shift = pad - t * dilation;  // o * stride >= shift and o * stride < size + shift
  auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
  return {std::clamp<int64_t>(ceil_div(shift, stride), 0, out),
          std::clamp<int64_t>(ceil_div(size + shift, stride), 0, out)};
}

// One tap's rectangle of output positions and, for each, the input position it reads.
struct Tap {
  int64_t kh, kw;
  Span rows, cols;
  int64_t per_image() const { return rows.count() * cols.count(); }
  int64_t in_row(const Conv2dParams& p, int64_t oh) const {
    return oh * p.stride_h - p.pad_top + kh * p.dilation_h;
  }
  int64_t in_col(const Conv2dParams& p, int64_t ow) const {
    return ow * p.stride_w - p.pad_left + kw * p.dilation_w;
  }
};

Tap tap_of(const Conv2dParams& p, int64_t kh, int64_t kw) {
  return {kh, kw, reached(kh, p.stride_h, p.pad_top, p.dilation_h, p.in_h, p.out_h),
          reached(kw, p.stride_w, p.pad_left, p.dilation_w, p.in_w, p.out_w)};
}

// fn(column, input offset within a channel's plane of image n, output offset
// within a channel's plane of image n, n) for every position of the tap, the
// columns numbered image after image.
template <class Fn>
void for_tap_positions(const Conv2dParams& p, const Tap& t, Fn&& fn) {
  int64_t column = 0;
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t oh = t.rows.first; oh < t.rows.end; ++oh) {
      const int64_t in_row = t.in_row(p, oh) * p.in_w, out_row = oh * p.out_w;
      for (int64_t ow = t.cols.first; ow < t.cols.end; ++ow) fn(column++, in_row + t.in_col(p, ow), out_row + ow, n);
    }
  }
}

// fn(tap-major index, index in w) for every weight of group g: tap-major,
// each tap's W_t is a contiguous kg x cg matrix, at (tap * kg + k) * cg + c
// for w[g*kg + k, c, tap]. One pass over the weights, where gathering each
// tap's matrix from w would pass over them once per tap.
template <class Fn>
void for_tap_major(const Conv2dParams& p, int64_t g, Fn&& fn) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), taps = p.kernel_h * p.kernel_w;
  const int64_t group = g * kg * cg * taps;
  parallel_for(kg, cg * taps, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      for (int64_t c = 0; c < cg; ++c) {
        for (int64_t tap = 0; tap < taps; ++tap) fn((tap * kg + k) * cg + c, group + (k * cg + c) * taps + tap);
      }
    }
  });
}

// fn(element of a, element of m) for `channels` channels of a (N,
// channels_total, plane) tensor at the tap's input (or output) positions, and
// their places m[c * n + column] in the tap's matrix.
template <class Fn>
void for_tap_columns(const Conv2dParams& p, const Tap& t, int64_t channels_total, int64_t first, int64_t channels,
                     bool input_side, Fn&& fn) {
  const int64_t n = p.batch * t.per_image(), plane = input_side ? p.in_plane() : p.out_plane();
  parallel_for(channels, n, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      for_tap_positions(p, t, [&](int64_t column, int64_t in_at, int64_t out_at, int64_t image) {
        fn((image * channels_total + first + c) * plane + (input_side ? in_at : out_at), c * n + column);
      });
    }
  });
}

void tap_major_weights(const Conv2dParams& p, const float* w, int64_t g, float* wt) {
  for_tap_major(p, g, [&](int64_t at, int64_t w_at) { wt[at] = w[w_at]; });
}

void store_tap_major(const Conv2dParams& p, const float* wt, int64_t g, float* w) {
  for_tap_major(p, g, [&](int64_t at, int64_t w_at) { w[w_at] = wt[at]; });
}

void gather_columns(const Conv2dParams& p, const Tap& t, const float* a, int64_t channels_total, int64_t first,
                    int64_t channels, bool input_side, float* m) {
  for_tap_columns(p, t, channels_total, first, channels, input_side,
                  [&](int64_t a_at, int64_t m_at) { m[m_at] = a[a_at]; });
}

void scatter_add_columns(const Conv2dParams& p, const Tap& t, const float* m, int64_t channels_total, int64_t first,
                         int64_t channels, bool input_side, float* a) {
  for_tap_columns(p, t, channels_total, first, channels, input_side,
                  [&](int64_t a_at, int64_t m_at) { a[a_at] += m[m_at]; });
}

// fn(tap, its index, n) for every tap that reaches a position (n columns).
template <class Fn>
void for_taps(const Conv2dParams& p, Fn&& fn) {
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const Tap t = tap_of(p, kh, kw);
      if (t.per_image() > 0) fn(t, kh * p.kernel_w + kw, p.batch * t.per_image());
    }
  }
}

}  // namespace

// Planes of at most 8x8 (where padding is a large share of the taps), and the
// batch's gathered matrices within the im2col budget.
bool tap_gemm_fits(const Conv2dParams& p) {
  const int64_t positions = p.batch * p.out_plane();
  return p.batch > 0 && p.out_plane() > 0 && p.out_plane() <= 64 && p.group_in_channels() > 0 &&
         p.group_out_channels() > 0 && positions <= kIm2colBudgetFloats / p.group_in_channels() &&
         positions <= kIm2colBudgetFloats / p.group_out_channels() &&
         p.group_in_channels() <= kIm2colBudgetFloats / p.group_out_channels();
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_tap_gemm) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), P = p.out_plane();
  const int64_t taps = p.kernel_h * p.kernel_w, most = p.batch * P;
  parallel_for(p.batch * p.out_channels, P, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::fill(y + r * P, y + (r + 1) * P, bias ? bias[r % p.out_channels] : 0.0f);
  });
  float* wt = thread_workspace(WorkspaceSlot::PackedWeights, static_cast<size_t>(taps * kg * cg));
  float* xt = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(cg * most));
  float* prod = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(kg * most));
  for (int64_t g = 0; g < p.groups; ++g) {
    tap_major_weights(p, w, g, wt);
    for_taps(p, [&](const Tap& t, int64_t tap, int64_t n) {
      gather_columns(p, t, x, p.in_channels, g * cg, cg, true, xt);
      sgemm(false, false, kg, n, cg, 1.0f, wt + tap * kg * cg, cg, xt, n, 0.0f, prod, n);
      scatter_add_columns(p, t, prod, p.out_channels, g * kg, kg, false, y);
    });
  }
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_tap_gemm) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), taps = p.kernel_h * p.kernel_w;
  const int64_t most = p.batch * p.out_plane();
  if (dx != nullptr) std::fill(dx, dx + p.batch * p.in_channels * p.in_plane(), 0.0f);
  if (dx != nullptr || dw != nullptr) {
    float* wt = thread_workspace(WorkspaceSlot::PackedWeights, static_cast<size_t>(taps * kg * cg));
    float* dwt = thread_workspace(WorkspaceSlot::FlippedWeights, static_cast<size_t>(taps * kg * cg));
    float* xt = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(cg * most));
    float* dyt = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(kg * most));
    for (int64_t g = 0; g < p.groups; ++g) {
      if (dx != nullptr) tap_major_weights(p, w, g, wt);
      // Taps that reach no position keep a zero weight gradient.
      if (dw != nullptr) std::fill(dwt, dwt + taps * kg * cg, 0.0f);
      for_taps(p, [&](const Tap& t, int64_t tap, int64_t n) {
        gather_columns(p, t, dy, p.out_channels, g * kg, kg, false, dyt);
        if (dx != nullptr) {
          sgemm(true, false, cg, n, kg, 1.0f, wt + tap * kg * cg, cg, dyt, n, 0.0f, xt, n);
          scatter_add_columns(p, t, xt, p.in_channels, g * cg, cg, true, dx);
        }
        if (dw != nullptr) {
          gather_columns(p, t, x, p.in_channels, g * cg, cg, true, xt);
          sgemm(false, true, kg, cg, n, 1.0f, dyt, n, xt, n, 0.0f, dwt + tap * kg * cg, cg);
        }
      });
      if (dw != nullptr) store_tap_major(p, dwt, g, dw);
    }
  }
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace cnnkit
