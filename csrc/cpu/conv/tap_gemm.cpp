// conv2d as one GEMM per kernel tap over the output positions that tap reaches
// inside the input, the whole batch side by side. im2col writes a zero for
// every tap that falls in the padding and multiplies it: on a 2x2 plane with a
// 3x3 kernel and padding 1 that is 5 taps of 9, on 4x4 planes 31% of them
// (vgg11's last layers).
//
// The tensors are copied once per call into channel, position, image order
// (batch innermost): a channel's values at a run of neighbouring positions,
// every image of each, are then one contiguous row, and the run of output
// positions a tap reaches along a row (stride 1) reads a run of neighbouring
// input positions. So each tap's products run on those copies in place, no
// gather or scatter: for each such run,
//   forward:         Y[:, run] += W_t . X[:, run's input positions]
//   input gradient:  dX[:, run's input positions] += W_t^T . dY[:, run]
//   weight gradient: dW_t += dY[:, run] . X[:, run's input positions]^T
// where W_t is the kg x cg matrix of tap (kh, kw). The weights are laid out
// tap by tap and each W_t packed for the GEMM kernel once per call (not once
// per product). The taps and runs go one after another (a fixed order of sums,
// whatever the thread count); the copies and the GEMMs inside are threaded.
#include <algorithm>

#include "cnnkit/gemm.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/gemm/kernels.h"

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

// fn(first output position, first input position, count) for runs of
// positions the tap reaches that are neighbours in both planes: the whole
// rectangle where its rows are full and follow each other in both (stride 1,
// as wide as the input: then the tap's first column reads input column 0),
// else one run per output row with horizontal stride 1, else one position
// at a time.
template <class Fn>
void for_tap_runs(const Conv2dParams& p, const Tap& t, Fn&& fn) {
  if (p.stride_h == 1 && p.stride_w == 1 && t.cols.count() == p.out_w && p.out_w == p.in_w) {
    fn(t.rows.first * p.out_w, t.in_row(p, t.rows.first) * p.in_w, t.rows.count() * p.out_w);
    return;
  }
  for (int64_t oh = t.rows.first; oh < t.rows.end; ++oh) {
    const int64_t out_row = oh * p.out_w, in_row = t.in_row(p, oh) * p.in_w;
    if (p.stride_w == 1) {
      fn(out_row + t.cols.first, in_row + t.in_col(p, t.cols.first), t.cols.count());
    } else {
      for (int64_t ow = t.cols.first; ow < t.cols.end; ++ow) fn(out_row + ow, in_row + t.in_col(p, ow), 1);
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

void tap_major_weights(const Conv2dParams& p, const float* w, int64_t g, float* wt) {
  for_tap_major(p, g, [&](int64_t at, int64_t w_at) { wt[at] = w[w_at]; });
}

void store_tap_major(const Conv2dParams& p, const float* wt, int64_t g, float* w) {
  for_tap_major(p, g, [&](int64_t at, int64_t w_at) { w[w_at] = wt[at]; });
}

// fn(element of a, element of m) for `channels` channels of a (batch,
// channels_total, plane) tensor from channel `first` on, and their places in
// m, channel, position, image order: m[(c * plane + pos) * batch + n]. Each
// work item is one channel's block of m, which stays in L1 while the images'
// rows of that channel are read.
template <class Fn>
void for_batch_inner(int64_t batch, int64_t channels_total, int64_t first, int64_t channels, int64_t plane,
                     Fn&& fn) {
  parallel_for(channels, batch * plane, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t n = 0; n < batch; ++n) {
        const int64_t a_row = (n * channels_total + first + c) * plane, m_row = c * plane * batch + n;
        for (int64_t pos = 0; pos < plane; ++pos) fn(a_row + pos, m_row + pos * batch);
      }
    }
  });
}

void to_batch_inner(const float* a, int64_t batch, int64_t channels_total, int64_t first, int64_t channels,
                    int64_t plane, float* m) {
  for_batch_inner(batch, channels_total, first, channels, plane, [&](int64_t a_at, int64_t m_at) { m[m_at] = a[a_at]; });
}

void from_batch_inner(const float* m, int64_t batch, int64_t channels_total, int64_t first, int64_t channels,
                      int64_t plane, float* a) {
  for_batch_inner(batch, channels_total, first, channels, plane, [&](int64_t a_at, int64_t m_at) { a[a_at] = m[m_at]; });
}

// fn(tap, its index) for every tap that reaches a position.
template <class Fn>
void for_taps(const Conv2dParams& p, Fn&& fn) {
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const Tap t = tap_of(p, kh, kw);
      if (t.per_image() > 0) fn(t, kh * p.kernel_w + kw);
    }
  }
}

// Each reached tap's W_t (or, `transposed`, W_t^T) from the tap-major weights
// packed for `kernel`, `stride` floats per tap.
void pack_taps(const Conv2dParams& p, const PackedSgemmKernel& kernel, const float* wt, bool transposed,
               float* packed, int64_t stride) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels();
  for_taps(p, [&](const Tap&, int64_t tap) {
    kernel.pack(transposed, transposed ? cg : kg, transposed ? kg : cg, wt + tap * kg * cg, cg, packed + tap * stride);
  });
}

// For every run of every reached tap, the batch-innermost copies (`from`
// and `to`) multiplied in place by pack_taps's W_t: forward, the output
// positions += W_t . the input positions they read; `input_grad`, those input
// positions += W_t^T . the output positions.
void multiply_taps(const Conv2dParams& p, const PackedSgemmKernel& kernel, const float* packed, int64_t stride,
                   bool input_grad, const float* from, float* to) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels();
  const int64_t in_ld = p.in_plane() * p.batch, out_ld = p.out_plane() * p.batch;
  const int64_t rows = input_grad ? cg : kg, depth = input_grad ? kg : cg;
  const int64_t from_ld = input_grad ? out_ld : in_ld, to_ld = input_grad ? in_ld : out_ld;
  for_taps(p, [&](const Tap& t, int64_t tap) {
    for_tap_runs(p, t, [&](int64_t out_at, int64_t in_at, int64_t count) {
      const int64_t from_at = input_grad ? out_at : in_at, to_at = input_grad ? in_at : out_at;
      kernel.run(packed + tap * stride, false, rows, count * p.batch, depth, 1.0f, from + from_at * p.batch, from_ld,
                 1.0f, to + to_at * p.batch, to_ld);
    });
  });
}

}  // namespace

// Planes of at most 8x8 (where padding is a large share of the taps), and the
// batch-innermost copies and the tap-major weights within the im2col budget.
bool tap_gemm_fits(const Conv2dParams& p) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), taps = p.kernel_h * p.kernel_w;
  return p.batch > 0 && p.out_plane() > 0 && p.out_plane() <= 64 && cg > 0 && kg > 0 && taps > 0 &&
         p.batch * p.in_plane() <= kIm2colBudgetFloats / cg && p.batch * p.out_plane() <= kIm2colBudgetFloats / kg &&
         cg * taps <= kIm2colBudgetFloats / kg;
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_tap_gemm) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), taps = p.kernel_h * p.kernel_w;
  const int64_t in_ld = p.in_plane() * p.batch, out_ld = p.out_plane() * p.batch;
  const PackedSgemmKernel& kernel = packed_sgemm_kernel();
  const int64_t packed_tap = kernel.floats(kg, cg);
  float* wt = thread_workspace(WorkspaceSlot::FlippedWeights, static_cast<size_t>(taps * kg * cg));
  float* packed = thread_workspace(WorkspaceSlot::PackedWeights, static_cast<size_t>(taps * packed_tap));
  float* xt = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(cg * in_ld));
  float* yt = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(kg * out_ld));
  for (int64_t g = 0; g < p.groups; ++g) {
    tap_major_weights(p, w, g, wt);
    pack_taps(p, kernel, wt, false, packed, packed_tap);
    to_batch_inner(x, p.batch, p.in_channels, g * cg, cg, p.in_plane(), xt);
    parallel_for(kg, out_ld, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) std::fill(yt + k * out_ld, yt + (k + 1) * out_ld, bias ? bias[g * kg + k] : 0.0f);
    });
    multiply_taps(p, kernel, packed, packed_tap, false, xt, yt);
    from_batch_inner(yt, p.batch, p.out_channels, g * kg, kg, p.out_plane(), y);
  }
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_tap_gemm) {
  const int64_t kg = p.group_out_channels(), cg = p.group_in_channels(), taps = p.kernel_h * p.kernel_w;
  const int64_t in_ld = p.in_plane() * p.batch, out_ld = p.out_plane() * p.batch;
  if (dx != nullptr || dw != nullptr) {
    const PackedSgemmKernel& kernel = packed_sgemm_kernel();
    const int64_t packed_tap = kernel.floats(cg, kg);
    // The tap-major weights, then (once the input gradient is done) the tap-major weight gradient.
    float* wt = thread_workspace(WorkspaceSlot::FlippedWeights, static_cast<size_t>(taps * kg * cg));
    float* dyt = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(kg * out_ld));
    float* packed = dx ? thread_workspace(WorkspaceSlot::PackedWeights, static_cast<size_t>(taps * packed_tap)) : nullptr;
    float* dxt = dx ? thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(cg * in_ld)) : nullptr;
    float* xt = dw ? thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(cg * in_ld)) : nullptr;
    for (int64_t g = 0; g < p.groups; ++g) {
      to_batch_inner(dy, p.batch, p.out_channels, g * kg, kg, p.out_plane(), dyt);
      if (dx != nullptr) {
        tap_major_weights(p, w, g, wt);
        pack_taps(p, kernel, wt, true, packed, packed_tap);
        // Input positions that no tap reads keep a zero gradient.
        parallel_for(cg, in_ld, [&](int64_t c0, int64_t c1) { std::fill(dxt + c0 * in_ld, dxt + c1 * in_ld, 0.0f); });
        multiply_taps(p, kernel, packed, packed_tap, true, dyt, dxt);
        from_batch_inner(dxt, p.batch, p.in_channels, g * cg, cg, p.in_plane(), dx);
      }
      if (dw != nullptr) {
        to_batch_inner(x, p.batch, p.in_channels, g * cg, cg, p.in_plane(), xt);
        // Taps that reach no position keep a zero weight gradient.
        std::fill(wt, wt + taps * kg * cg, 0.0f);
        for_taps(p, [&](const Tap& t, int64_t tap) {
          float beta = 0.0f;
          for_tap_runs(p, t, [&](int64_t out_at, int64_t in_at, int64_t count) {
            sgemm(false, true, kg, cg, count * p.batch, 1.0f, dyt + out_at * p.batch, out_ld, xt + in_at * p.batch,
                  in_ld, beta, wt + tap * kg * cg, cg);
            beta = 1.0f;
          });
        });
        store_tap_major(p, wt, g, dw);
      }
    }
  }
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace cnnkit
