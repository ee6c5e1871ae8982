// im2col + GEMM convolution: per image and group, the taps of a chunk of
// output positions are unrolled into a (C/g*kh*kw) x chunk column matrix in a
// per-thread workspace, and one sgemm multiplies the weights into the output.
#include <algorithm>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "cnnkit/gemm.h"
#include "cnnkit/threads.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// im2col_columns copies channels into a zero-padded plane first for output
// rows of at most this many floats, planes within the bound (256 KiB), and
// col2im_columns adds into one.
constexpr int64_t kIm2colShortRow = 32;
constexpr int64_t kIm2colPaddedPlaneFloats = int64_t{1} << 16;

// Short output rows: the tap-segment walk spends more on its bounds than on
// moving a few floats per row (7x7 planes: 4 cycles a float). There each
// channel goes through a zero-padded plane, whose taps' rows are plain runs.
bool via_padded_plane(const Conv2dParams& p) {
  return p.out_w > 0 && p.out_w <= kIm2colShortRow && p.padded_plane() <= kIm2colPaddedPlaneFloats;
}

// Walks the flattened output positions [p0, p1) of tap (r, s) one output-row
// segment at a time: inside(base, lo, hi, x0) covers the run whose column
// entry base + ow reads input element x0 + ow * stride_w; outside(j, count)
// covers runs of column entries j.. that fall in the padding. Callers index
// with x0 + ow * stride_w in integers before forming a pointer. im2col and
// col2im share these bounds so they stay exact adjoints.
template <class Inside, class Outside>
void for_tap_segments(const Conv2dParams& p, int64_t r, int64_t s, int64_t p0, int64_t p1,
                      Inside inside, Outside outside) {
  const int64_t Wo = p.out_w;
  const int64_t off_h = r * p.dilation_h - p.pad_top;
  const int64_t off_w = s * p.dilation_w - p.pad_left;
  const TapRange tw = tap_range(off_w, p.stride_w, p.in_w, Wo);
  int64_t j = 0;
  // (oh, ow0) of pos, divided out once: after the first row every segment
  // starts a row. (Small planes run a few floats per row, where two divisions
  // per row and tap were a large part of im2col.)
  int64_t oh = Wo > 0 ? p0 / Wo : 0, ow0 = Wo > 0 ? p0 % Wo : 0;
  for (int64_t pos = p0; pos < p1; ++oh, ow0 = 0) {
    const int64_t ow1 = std::min(Wo, ow0 + (p1 - pos));
    const int64_t ih = oh * p.stride_h + off_h;
    if (ih < 0 || ih >= p.in_h) {
      outside(j, ow1 - ow0);
    } else {
      const int64_t lo = std::clamp(tw.lo, ow0, ow1), hi = std::clamp(tw.hi, lo, ow1);
      outside(j, lo - ow0);
      // Column entry j + (ow - ow0) reads input element ih*W + ow*stride + off_w.
      // Only with taps to copy: off_w alone can lie 2^62 floats before the row.
      if (lo < hi) inside(j - ow0, lo, hi, ih * p.in_w + off_w);
      outside(j + hi - ow0, ow1 - hi);
    }
    j += ow1 - ow0;
    pos += ow1 - ow0;
  }
}

// dst[i * stride] += src[i] for i < n, the adjoint of gather_strided. With
// stride 2 (SSE2) the odd elements in between get + 0.0f, which changes none:
// dx and the padded planes start from +0.0f, so no sum is ever -0.0f.
void scatter_add_strided(const float* src, int64_t stride, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef __SSE2__
  if (stride == 2) {
    const __m128 zero = _mm_setzero_ps();
    for (; i + 4 < n; i += 4) {
      const __m128 v = _mm_loadu_ps(src + i);
      float* d = dst + 2 * i;
      _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), _mm_unpacklo_ps(v, zero)));
      _mm_storeu_ps(d + 4, _mm_add_ps(_mm_loadu_ps(d + 4), _mm_unpackhi_ps(v, zero)));
    }
  }
#endif
  for (; i < n; ++i) dst[i * stride] += src[i];
}

// Column entries [p0, p1) of one tap from a zero-padded plane (rows Wp
// floats apart), `tap` pointing at the tap's offset in it: output row oh,
// column ow reads tap[oh * stride_h * Wp + ow * stride_w].
void copy_tap_rows(const Conv2dParams& p, const float* tap, int64_t Wp, int64_t p0, int64_t p1, float* dst) {
  const int64_t Wo = p.out_w, sw = p.stride_w;
  int64_t oh = p0 / Wo, ow0 = p0 % Wo;
  for (int64_t pos = p0; pos < p1; ++oh, ow0 = 0) {
    const int64_t n = std::min(Wo - ow0, p1 - pos);
    gather_strided(tap + oh * p.stride_h * Wp + ow0 * sw, sw, dst, n);
    dst += n;
    pos += n;
  }
}

// The adjoint of copy_tap_rows: adds column entries [p0, p1) of one tap
// where copy_tap_rows read them.
void add_tap_rows(const Conv2dParams& p, const float* src, int64_t Wp, int64_t p0, int64_t p1, float* tap) {
  const int64_t Wo = p.out_w, sw = p.stride_w;
  int64_t oh = p0 / Wo, ow0 = p0 % Wo;
  for (int64_t pos = p0; pos < p1; ++oh, ow0 = 0) {
    const int64_t n = std::min(Wo - ow0, p1 - pos);
    scatter_add_strided(src, sw, tap + oh * p.stride_h * Wp + ow0 * sw, n);
    src += n;
    pos += n;
  }
}

}  // namespace

// Stride 1 is a copy. Stride-2 rows, the downsampling layers' case, go four
// floats at a time with SSE2 (every x86-64); each vector step also touches
// the odd element after its last even one, so the vector loop stops before
// the last group: nothing past src[(n - 1) * stride] is read.
void gather_strided(const float* src, int64_t stride, float* dst, int64_t n) {
  if (stride == 1) {
    std::copy(src, src + n, dst);
    return;
  }
  int64_t i = 0;
#ifdef __SSE2__
  if (stride == 2) {
    for (; i + 4 < n; i += 4) {
      const __m128 a = _mm_loadu_ps(src + 2 * i), b = _mm_loadu_ps(src + 2 * i + 4);
      _mm_storeu_ps(dst + i, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    }
  }
#endif
  for (; i < n; ++i) dst[i] = src[i * stride];
}

ColumnPlan plan_columns(const Conv2dParams& p) {
  const int64_t reduction = std::max<int64_t>(p.reduction(), 1);
  int64_t outer = p.batch >= num_threads() ? num_threads() : 1;
  if (outer > 1 && reduction > kIm2colBudgetFloats / outer) outer = 1;
  const int64_t chunk = std::clamp<int64_t>(kIm2colBudgetFloats / outer / reduction, 1,
                                            std::max<int64_t>(p.out_plane(), 1));
  return {outer, chunk};
}

bool columns_are_input(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 &&
         p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
}

ColumnBlock column_block(const Conv2dParams& p, const float* x_group, int64_t p0, int64_t p1, float* col) {
  if (columns_are_input(p)) return {x_group + p0, p.out_plane()};
  im2col_columns(p, x_group, p0, p1, col, p1 - p0);
  return {col, p1 - p0};
}

void im2col_columns(const Conv2dParams& p, const float* x_group, int64_t p0, int64_t p1, float* col, int64_t ld) {
  const int64_t R = p.kernel_h, S = p.kernel_w, cols = p1 - p0, sw = p.stride_w;
  const int64_t Wp = p.padded_w(), Hp = p.padded_h();
  const bool via_padded = via_padded_plane(p);
  parallel_for(p.group_in_channels(), work_per_item(p.group_in_channels(), {R, S, cols}), [&](int64_t c_begin, int64_t c_end) {
    float* xp = nullptr;
    if (via_padded) {
      xp = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(Hp * Wp));
      std::fill(xp, xp + Hp * Wp, 0.0f);  // the padding; copy_into_padded writes the rest
    }
    for (int64_t c = c_begin; c < c_end; ++c) {
      const float* xc = x_group + c * p.in_plane();
      if (via_padded) copy_into_padded(p, xc, 1, xp, Hp * Wp, Wp);
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t s = 0; s < S; ++s) {
          float* row = col + ((c * R + r) * S + s) * ld;
          if (via_padded) {
            copy_tap_rows(p, xp + r * p.dilation_h * Wp + s * p.dilation_w, Wp, p0, p1, row);
            continue;
          }
          for_tap_segments(
              p, r, s, p0, p1,
              [&](int64_t base, int64_t lo, int64_t hi, int64_t x0) {
                gather_strided(xc + (x0 + lo * sw), sw, row + base + lo, hi - lo);
              },
              [&](int64_t j, int64_t count) { std::fill(row + j, row + j + count, 0.0f); });
        }
      }
    }
  });
}

void col2im_columns(const Conv2dParams& p, const float* col, int64_t ld, int64_t p0, int64_t p1, float* dx_group) {
  const int64_t R = p.kernel_h, S = p.kernel_w, cols = p1 - p0, sw = p.stride_w;
  const int64_t Wp = p.padded_w(), Hp = p.padded_h();
  const bool via_padded = via_padded_plane(p);
  // Channels are independent: each thread owns whole dx planes.
  parallel_for(p.group_in_channels(), work_per_item(p.group_in_channels(), {R, S, cols}), [&](int64_t c_begin, int64_t c_end) {
    float* xp = via_padded ? thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(Hp * Wp)) : nullptr;
    for (int64_t c = c_begin; c < c_end; ++c) {
      float* dxc = dx_group + c * p.in_plane();
      if (via_padded) std::fill(xp, xp + Hp * Wp, 0.0f);
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t s = 0; s < S; ++s) {
          const float* row = col + ((c * R + r) * S + s) * ld;
          if (via_padded) {
            add_tap_rows(p, row, Wp, p0, p1, xp + r * p.dilation_h * Wp + s * p.dilation_w);
            continue;
          }
          for_tap_segments(
              p, r, s, p0, p1,
              [&](int64_t base, int64_t lo, int64_t hi, int64_t x0) {
                scatter_add_strided(row + base + lo, sw, dxc + (x0 + lo * sw), hi - lo);
              },
              [](int64_t, int64_t) {});
        }
      }
      if (!via_padded) continue;
      // The sums that landed in the padding belong to no input element.
      for (int64_t ih = 0; ih < p.in_h; ++ih) {
        const float* src = xp + (ih + p.pad_top) * Wp + p.pad_left;
        float* dst = dxc + ih * p.in_w;
        for (int64_t iw = 0; iw < p.in_w; ++iw) dst[iw] += src[iw];
      }
    }
  });
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_im2col) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t K = p.reduction(), P = p.out_plane();
  const ColumnPlan plan = plan_columns(p);
  const bool direct_columns = columns_are_input(p);
  for_images(plan, p.batch, work_per_item(p.batch, {p.out_channels, K, P}), [&](int64_t n_begin, int64_t n_end) {
    float* col = direct_columns
                     ? nullptr
                     : thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(K * plan.chunk));
    for (int64_t n = n_begin; n < n_end; ++n) {
      for (int64_t g = 0; g < p.groups; ++g) {
        const float* xg = x + (n * p.in_channels + g * cg) * p.in_plane();
        float* yg = y + (n * p.out_channels + g * kg) * P;
        for (int64_t p0 = 0; p0 < P; p0 += plan.chunk) {
          const int64_t p1 = std::min(P, p0 + plan.chunk);
          const ColumnBlock b = column_block(p, xg, p0, p1, col);
          sgemm(false, false, kg, p1 - p0, K, 1.0f, w + g * kg * K, K, b.data, b.ld, 0.0f, yg + p0, P);
        }
        if (bias != nullptr) {
          for (int64_t o = 0; o < kg; ++o) {
            float* yo = yg + o * P;
            const float bo = bias[g * kg + o];
            for (int64_t i = 0; i < P; ++i) yo[i] += bo;
          }
        }
      }
    }
  });
}

}  // namespace cnnkit
