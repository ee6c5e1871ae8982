// conv2d's per-thread work on the GPU, as functions of the thread's indices: the direct kernels
// (one output element per thread, the definition the GEMM forms are tested against), the
// im2col/col2im index maps, and the gather operands of the implicit GEMM, which read the
// column matrix straight from the image without materialising it.
//
// Layouts as on the CPU: x (N, C, H, W), w (K, C/groups, kh, kw), y (N, K, Ho, Wo). The GEMM
// depth ("taps") of the forward pass is t = (c * kh + r) * kw + s over one group's channels.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/common/hd.h"
#include "cuda/gemm/tile.h"

namespace cnnkit::cuda::conv {

// q = a / b, r = a % b for a >= 0, b > 0: in 32-bit arithmetic where both fit, since a 64-bit
// division costs the GPU several times as many instructions, and the gathers below divide for
// every element they load.
CNNKIT_HD void divmod(int64_t a, int64_t b, int64_t& q, int64_t& r) {
  if (((a | b) >> 32) == 0) {
    q = uint32_t(a) / uint32_t(b);
    r = uint32_t(a) - uint32_t(q) * uint32_t(b);
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// Steps a (outer, inner) position to the next inner index, carrying into outer at `size`.
CNNKIT_HD void advance(int64_t& outer, int64_t& inner, int64_t size) {
  if (++inner == size) inner = 0, ++outer;
}

// A position (n, row, col) in a batch of height x width planes, from its flat index, stepped one
// column at a time. A GEMM depth index t is one too: (channel, r, s) in the kh x kw kernels.
struct PlaneCursor {
  int64_t n = 0, row = 0, col = 0;
  CNNKIT_HD PlaneCursor(int64_t j, int64_t height, int64_t width) {
    int64_t p;
    divmod(j, height * width, n, p);
    divmod(p, width, row, col);
  }
  CNNKIT_HD void next(int64_t height, int64_t width) {
    advance(row, col, width);
    if (row == height) row = 0, ++n;
  }
};

struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, kh = 1, kw = 1;       // output channels, kernel
  int64_t Ho = 0, Wo = 0;              // output
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1, groups = 1;

  CNNKIT_HD int64_t Cg() const { return C / groups; }
  CNNKIT_HD int64_t Kg() const { return K / groups; }
  CNNKIT_HD int64_t kernel() const { return kh * kw; }
  CNNKIT_HD int64_t taps() const { return Cg() * kh * kw; }
  CNNKIT_HD int64_t out_plane() const { return Ho * Wo; }
  CNNKIT_HD int64_t in_plane() const { return H * W; }

  // The input row (column) that output row oh (column ow) reads through kernel row r (column s);
  // outside [0, H) ([0, W)) it is padding.
  CNNKIT_HD int64_t in_row(int64_t oh, int64_t r) const { return oh * sh - pt + r * dh; }
  CNNKIT_HD int64_t in_col(int64_t ow, int64_t s) const { return ow * sw - pl + s * dw; }
  // The output row that input row h feeds through kernel row r, or -1 where none does (h + pt -
  // r*dh off the stride's grid or outside the output).
  CNNKIT_HD int64_t out_row(int64_t h, int64_t r) const { return on_grid(h + pt - r * dh, sh, Ho); }
  CNNKIT_HD int64_t out_col(int64_t w, int64_t s) const { return on_grid(w + pl - s * dw, sw, Wo); }

  // x[n, c, in_row(oh, r), in_col(ow, s)], or 0 in the padding.
  CNNKIT_HD float input_tap(const float* x, int64_t n, int64_t c, int64_t r, int64_t s, int64_t oh,
                            int64_t ow) const {
    const int64_t h = in_row(oh, r), w = in_col(ow, s);
    return h >= 0 && h < H && w >= 0 && w < W ? x[((n * C + c) * H + h) * W + w] : 0.0f;
  }

 private:
  CNNKIT_HD static int64_t on_grid(int64_t t, int64_t stride, int64_t size) {
    if (t < 0 || t % stride != 0) return -1;
    t /= stride;
    return t < size ? t : -1;
  }
};

// ---- direct kernels: one output element per thread, padded taps skipped ----------------------

struct DirectForward {
  ConvGeom g;
  const float* x;
  const float* w;
  const float* bias;  // may be null
  float* y;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, k = (i / g.out_plane()) % g.K, n = i / (g.out_plane() * g.K);
    const int64_t c0 = k / g.Kg() * g.Cg();
    float acc = 0.0f;
    for (int64_t c = 0; c < g.Cg(); ++c) {
      for (int64_t r = 0; r < g.kh; ++r) {
        const int64_t h = g.in_row(oh, r);
        if (h < 0 || h >= g.H) continue;
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t col = g.in_col(ow, s);
          if (col < 0 || col >= g.W) continue;
          acc = fmaf(x[((n * g.C + c0 + c) * g.H + h) * g.W + col], w[((k * g.Cg() + c) * g.kh + r) * g.kw + s], acc);
        }
      }
    }
    y[i] = bias != nullptr ? acc + bias[k] : acc;
  }
};

// dx[n, c, h, w]: every output the input element feeds, times the weight that connects them.
struct DirectInputGrad {
  ConvGeom g;
  const float* dy;
  const float* w;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t col = i % g.W, h = (i / g.W) % g.H, c = (i / g.in_plane()) % g.C, n = i / (g.in_plane() * g.C);
    const int64_t group = c / g.Cg(), cg = c % g.Cg();
    float acc = 0.0f;
    for (int64_t m = group * g.Kg(); m < (group + 1) * g.Kg(); ++m) {
      for (int64_t r = 0; r < g.kh; ++r) {
        const int64_t oh = g.out_row(h, r);
        if (oh < 0) continue;
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t ow = g.out_col(col, s);
          if (ow < 0) continue;
          acc = fmaf(dy[((n * g.K + m) * g.Ho + oh) * g.Wo + ow], w[((m * g.Cg() + cg) * g.kh + r) * g.kw + s], acc);
        }
      }
    }
    dx[i] = acc;
  }
};

// dw[k, c, r, s]: the whole batch and every output position in one thread, in a fixed order.
struct DirectWeightGrad {
  ConvGeom g;
  const float* dy;
  const float* x;
  float* dw;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t s = i % g.kw, r = (i / g.kw) % g.kh, c = (i / g.kernel()) % g.Cg(), k = i / g.taps();
    const int64_t c_in = k / g.Kg() * g.Cg() + c;
    float acc = 0.0f;
    for (int64_t n = 0; n < g.N; ++n) {
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const int64_t h = g.in_row(oh, r);
        if (h < 0 || h >= g.H) continue;
        for (int64_t ow = 0; ow < g.Wo; ++ow) {
          const int64_t col = g.in_col(ow, s);
          if (col < 0 || col >= g.W) continue;
          acc = fmaf(dy[((n * g.K + k) * g.Ho + oh) * g.Wo + ow], x[((n * g.C + c_in) * g.H + h) * g.W + col], acc);
        }
      }
    }
    dw[i] = acc;
  }
};

// ---- im2col: one image's column matrix, rows (c, r, s) over all channels, columns (oh, ow) ----

struct Im2col {
  ConvGeom g;
  const float* image;  // x + n * C * H * W
  float* col;          // C * kh * kw rows of Ho * Wo: group q's rows start at q * taps()
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t p = i % g.out_plane(), row = i / g.out_plane();
    const int64_t rs = row % g.kernel(), c = row / g.kernel();
    col[i] = g.input_tap(image, 0, c, rs / g.kw, rs % g.kw, p / g.Wo, p % g.Wo);
  }
};

// The inverse map for the input gradient, as a gather: each input element sums the column
// entries that read it, so no two threads write the same element (no atomics).
struct Col2im {
  ConvGeom g;
  const float* col;
  float* image;  // dx + n * C * H * W
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t w = i % g.W, h = (i / g.W) % g.H, c = i / g.in_plane();
    float acc = 0.0f;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t oh = g.out_row(h, r);
      if (oh < 0) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        const int64_t ow = g.out_col(w, s);
        if (ow >= 0) acc += col[((c * g.kh + r) * g.kw + s) * g.out_plane() + oh * g.Wo + ow];
      }
    }
    image[i] = acc;
  }
};

// ---- implicit GEMM operands (see gemm/tile.h for the operand interface) ----------------------

// An operand around a gather: the gather's load4(group, r, k, rows, k_end, v) reads four
// consecutive elements along its contiguous axis (kAlongK: the depth, else the rows) for group
// `group`; batch z of the product is group z.
template <class Gather>
struct GatherOperand {
  Gather gather;
  int64_t group = 0;
  CNNKIT_HD GatherOperand batch(int64_t z) const { return {gather, z}; }
  CNNKIT_HD bool k_contiguous() const { return Gather::kAlongK; }
  CNNKIT_HD float at(int64_t r, int64_t k) const {
    float v[4];
    gather.load4(group, r, k, r + 1, k + 1, v);
    return v[0];
  }
  CNNKIT_HD void load4(int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) const {
    gather.load4(group, r, k, rows, k_end, v);
  }
};

// Forward B: the column matrix of the whole batch, read from x. Rows j = n * Ho * Wo + p, depth
// t = one tap of the group. Consecutive rows are consecutive output columns, which read
// consecutive input columns at stride 1, so tiles are copied along the rows: four rows at one
// tap from one decomposition of j and t, then steps along the output row.
struct ImageColumnsGather {
  static constexpr bool kAlongK = false;
  ConvGeom g;
  const float* x;
  CNNKIT_HD void load4(int64_t group, int64_t j, int64_t t, int64_t rows, int64_t k_end, float v[4]) const {
    const PlaneCursor tap(t, g.kh, g.kw);
    PlaneCursor out(j, g.Ho, g.Wo);
    CNNKIT_UNROLL
    for (int i = 0; i < 4; ++i, out.next(g.Ho, g.Wo)) {
      v[i] = j + i < rows && t < k_end
                 ? g.input_tap(x, out.n, group * g.Cg() + tap.n, tap.row, tap.col, out.row, out.col)
                 : 0.0f;
    }
  }
};
using ImageColumns = GatherOperand<ImageColumnsGather>;

// Forward C: row m of group z is output channel z * Kg + m; column j is (n, p).
struct OutputStore {
  ConvGeom g;
  float* y;
  const float* bias;
  CNNKIT_HD void store(int64_t z, int64_t, int64_t m, int64_t j, float v) const {
    const int64_t k = z * g.Kg() + m;
    y[((j / g.out_plane()) * g.K + k) * g.out_plane() + j % g.out_plane()] = bias != nullptr ? v + bias[k] : v;
  }
};

// A gradient pass's A operand read from a 4-D array whose GEMM depth has two levels: element
// (r, k), k = outer * inner_size + inner, at p[group * group_stride + r * row_stride + outer *
// outer_stride + inner]; four along the depth from one decomposition, with carries.
struct TwoLevelDepthGather {
  static constexpr bool kAlongK = true;
  const float* p;
  int64_t row_stride, outer_stride, inner_size, group_stride;
  CNNKIT_HD void load4(int64_t group, int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) const {
    int64_t outer, inner;
    divmod(k, inner_size, outer, inner);
    CNNKIT_UNROLL
    for (int i = 0; i < 4; ++i) {
      v[i] = r < rows && k + i < k_end ? p[group * group_stride + r * row_stride + outer * outer_stride + inner] : 0.0f;
      advance(outer, inner, inner_size);
    }
  }
};
using TwoLevelDepth = GatherOperand<TwoLevelDepthGather>;

// Input gradient A: rows c (a group's input channels), depth t = (m, r, s) over the group's
// output channels and the kernel: w[group * Kg + m, c, r, s].
inline TwoLevelDepth weight_columns(const ConvGeom& g, const float* w) {
  return {{w, g.kernel(), g.Cg() * g.kernel(), g.kernel(), g.Kg() * g.Cg() * g.kernel()}};
}

// Input gradient B: rows j = (n, h, w) of the input, depth t = (m, r, s): the output gradient
// that input element receives through tap (r, s) of output channel m, 0 where none. Four rows
// from one decomposition, then steps along the input row.
struct OutputGradTapsGather {
  static constexpr bool kAlongK = false;
  ConvGeom g;
  const float* dy;
  CNNKIT_HD void load4(int64_t group, int64_t j, int64_t t, int64_t rows, int64_t k_end, float v[4]) const {
    const PlaneCursor tap(t, g.kh, g.kw);
    const int64_t m = group * g.Kg() + tap.n;
    PlaneCursor in(j, g.H, g.W);
    CNNKIT_UNROLL
    for (int i = 0; i < 4; ++i, in.next(g.H, g.W)) {
      const int64_t oh = g.out_row(in.row, tap.row), ow = g.out_col(in.col, tap.col);
      const bool inside = j + i < rows && t < k_end && oh >= 0 && ow >= 0;
      v[i] = inside ? dy[((in.n * g.K + m) * g.Ho + oh) * g.Wo + ow] : 0.0f;
    }
  }
};
using OutputGradTaps = GatherOperand<OutputGradTapsGather>;

// Input gradient C: row c of group z, column j = (n, h, w).
struct InputGradStore {
  ConvGeom g;
  float* dx;
  CNNKIT_HD void store(int64_t z, int64_t, int64_t c, int64_t j, float v) const {
    dx[((j / g.in_plane()) * g.C + z * g.Cg() + c) * g.in_plane() + j % g.in_plane()] = v;
  }
};

// Weight gradient A: rows m (a group's output channels), depth j = (n, p) over the batch's
// output positions: dy[n, group * Kg + m, p].
inline TwoLevelDepth output_grad_rows(const ConvGeom& g, const float* dy) {
  return {{dy, g.out_plane(), g.K * g.out_plane(), g.out_plane(), g.Kg() * g.out_plane()}};
}

}  // namespace cnnkit::cuda::conv
