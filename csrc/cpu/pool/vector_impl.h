// Pooling with explicit SIMD over output columns, written once over a lane
// type V (vector_avx2.cpp, vector_avx512.cpp). Work items are (plane, output
// row) pairs, so a few large planes still spread over every thread.
//
// Forward: a vector holds V::kWidth neighbouring outputs of one row; each
// kernel tap is one strided load (stride 1: a plain load; 2: two loads and a
// deinterleave; others: a gather) and the taps are visited in the reference's
// row-major order, so max and avg results are bit-identical to it. Windows
// that touch the padding or are clipped go through direct_impl.h's
// one-window code.
//
// Avg backward: every window spreads one share g / divisor over a rectangle,
// so an output row's shares are first expanded into one input-width row
// (the sum of the shares of the windows that cover each column), which is then
// added to each input row the windows cover. An input row is owned by the first
// output row whose windows reach it; the output rows that touch it are visited
// in ascending order whatever the split, so results do not depend on the
// thread count.
//
// Include after direct_impl.h and the lane type, from *_avx2.cpp / *_avx512.cpp only.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cnnkit/pool.h"
#include "cpu/pool/window.h"
#include "core/parallel.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

// Columns [lo, hi) of the interior whose strided loads stay inside the row:
// the stride-2 load reads one float past its last lane.
template <class V>
Interior vector_columns(const Pool2dShape& s, Interior cols) {
  if (s.stride_w != 2) return cols;
  const int64_t last_tap = (s.kernel_w - 1) * s.dilation_w;
  const int64_t limit = s.in_w - 2 + s.pad_w - last_tap;  // bound on 2 * o for the last lane o
  const int64_t hi = limit < 0 ? 0 : min64(cols.hi, limit / 2 + 1);
  return {cols.lo, max64(cols.lo, hi)};
}

// Lanes p[0], p[stride], ... for n lanes; n < V::kWidth reads only what those
// lanes need and gives 0 in the others.
template <class V>
typename V::F load_taps(const float* p, int64_t stride, int64_t n) {
  const int64_t W = V::kWidth;
  if (n == W) {
    if (stride == 1) return V::load(p);
    if (stride == 2) return V::even_lanes(V::load(p), V::load(p + W));
    return V::gather(p, stride, W);
  }
  if (stride == 1) return V::load_partial(p, n);
  if (stride == 2) {
    const int64_t floats = 2 * n - 1;  // p[0] .. p[2n - 2]
    const typename V::F lo = floats >= W ? V::load(p) : V::load_partial(p, floats);
    const typename V::F hi = floats > W ? V::load_partial(p + W, floats - W) : V::zero();
    return V::even_lanes(lo, hi);
  }
  return V::gather(p, stride, n);
}

// Lanes in the next block of interior columns from ow: full vectors while the
// stride-2 over-read stays in the row, then partial ones.
template <class V>
int64_t block_lanes(int64_t ow, Interior cols, Interior vcols) {
  if (ow + V::kWidth <= vcols.hi) return V::kWidth;
  return min64(V::kWidth - 1, cols.hi - ow);
}

// The windows of output row oh: scalar(ow) for each one that crosses the
// padding (every window of a border row), block(ow, n) for each run of n
// interior windows (block_lanes).
template <class V, class Scalar, class Block>
void for_row_windows(const Pool2dShape& s, Interior rows, Interior cols, Interior vcols, int64_t oh,
                     Scalar&& scalar, Block&& block) {
  if (oh < rows.lo || oh >= rows.hi) {
    for (int64_t ow = 0; ow < s.out_w; ++ow) scalar(ow);
    return;
  }
  int64_t ow = 0;
  for (; ow < cols.lo; ++ow) scalar(ow);
  for (int64_t n; ow < cols.hi; ow += n) {
    n = block_lanes<V>(ow, cols, vcols);
    block(ow, n);
  }
  for (; ow < s.out_w; ++ow) scalar(ow);
}

// Calls fn(p, oh) for every work item in [begin, end) of the planes * out_h
// items, dividing once per range: on small planes (a 16-wide output row is one
// vector) two 64-bit divisions per item were a large part of its cost.
template <class Fn>
void for_rows(const Pool2dShape& s, int64_t begin, int64_t end, Fn&& fn) {
  if (begin >= end) return;
  int64_t p = begin / s.out_h, oh = begin % s.out_h;
  for (int64_t item = begin; item < end; ++item) {
    fn(p, oh);
    if (++oh == s.out_h) {
      oh = 0;
      ++p;
    }
  }
}

// The common windows (2x2 and 3x3, horizontal stride 1 or 2, no dilation)
// get instances with the window and stride known at compile time, the taps
// unrolled: on small planes the per-tap loop and stride tests cost more than
// the loads (vgg11's 2x2 pools ran at a quarter of ONNX Runtime's speed).
// KH = 0 is the instance for any window, read from the shape.
//
// Calls f(integral_constant KH, KW, SW) for s's window when it is one of
// those, else f(0, 0, 0).
template <class Fn>
void with_fixed_window(const Pool2dShape& s, Fn&& f) {
  using std::integral_constant;
  if (s.dilation_h == 1 && s.dilation_w == 1) {
    if (s.kernel_h == 2 && s.kernel_w == 2 && s.stride_w == 2) {
      return f(integral_constant<int, 2>{}, integral_constant<int, 2>{}, integral_constant<int, 2>{});
    }
    if (s.kernel_h == 3 && s.kernel_w == 3 && s.stride_w == 2) {
      return f(integral_constant<int, 3>{}, integral_constant<int, 3>{}, integral_constant<int, 2>{});
    }
    if (s.kernel_h == 3 && s.kernel_w == 3 && s.stride_w == 1) {
      return f(integral_constant<int, 3>{}, integral_constant<int, 3>{}, integral_constant<int, 1>{});
    }
  }
  f(integral_constant<int, 0>{}, integral_constant<int, 0>{}, integral_constant<int, 0>{});
}

// Whether a max pool's running maximum `best` gives way to the tap v: when v is
// greater or NaN, as the reference decides (the first maximum, the last NaN).
template <class V>
typename V::M replaces(typename V::F best, typename V::F v) {
  return V::either(V::gt(v, best), V::is_nan(v));
}

// Stores the first n lanes of v at p, where the floats from p up to `end`
// (exclusive) are outputs this thread writes later in program order (the rest
// of the row, the next rows of its chunk): a full store is then safe, its
// extra lanes overwritten later, and it replaces AVX2's masked store, which is
// microcoded on AMD's cores (mnist_cnn's 7-wide pool rows, one masked store
// each, spent a fifth of their time in it: benchmarks/results).
template <class V>
void store_lanes(float* p, typename V::F v, int64_t n, const float* end) {
  if (n == V::kWidth || p + V::kWidth <= end) {
    V::store(p, v);
  } else {
    V::store_partial(p, v, n);
  }
}

template <class V, bool kIndices, int KH, int KW, int SW>
void max_forward_rows(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  using F = typename V::F;
  using I = typename V::I;
  const Interior rows = interior(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  const Interior vcols = vector_columns<V>(s, cols);
  const int64_t W = V::kWidth;
  const int64_t stride = SW != 0 ? SW : s.stride_w;
  const int64_t kernel_h = KH != 0 ? KH : s.kernel_h, kernel_w = KW != 0 ? KW : s.kernel_w;
  const int64_t dilation_h = KH != 0 ? 1 : s.dilation_h, dilation_w = KH != 0 ? 1 : s.dilation_w;
  parallel_for(s.planes * s.out_h, s.out_w * s.kernel_h * s.kernel_w, [&](int64_t b, int64_t e) {
    const float* chunk_end = out + e * s.out_w;
    for_rows(s, b, e, [&](int64_t p, int64_t oh) {
      const float* plane = input + p * s.in_h * s.in_w;
      const int64_t row = (p * s.out_h + oh) * s.out_w;
      float* out_row = out + row;
      int64_t* index_row = kIndices ? indices + row : nullptr;
      auto scalar = [&](int64_t ow) {
        max_window<kIndices>(s, plane, oh, ow, out_row + ow, kIndices ? index_row + ow : nullptr);
      };
      const int64_t h_start = oh * s.stride_h - s.pad_h;
      for_row_windows<V>(s, rows, cols, vcols, oh, scalar, [&](int64_t ow, int64_t n) {
        const I lanes = V::lane_index(ow * stride, stride);
        F best = V::set1(kMinusInf);
        I best_index = V::iadd(lanes, V::iset1(h_start * s.in_w - s.pad_w));
        for (int64_t i = 0; i < kernel_h; ++i) {
          for (int64_t j = 0; j < kernel_w; ++j) {
            const int64_t tap = (h_start + i * dilation_h) * s.in_w - s.pad_w + j * dilation_w;
            const F v = load_taps<V>(plane + tap + ow * stride, stride, n);
            const typename V::M take = replaces<V>(best, v);
            best = V::select(take, v, best);
            if (kIndices) {
              best_index = V::iselect(take, V::iadd(lanes, V::iset1(tap)), best_index);
            }
          }
        }
        store_lanes<V>(out_row + ow, best, n, chunk_end);
        if (kIndices) {
          if (n == W) {
            V::store_index(index_row + ow, best_index);
          } else {
            V::store_index_partial(index_row + ow, best_index, n);
          }
        }
      });
    });
  });
}

// Max over 2x2 windows with horizontal stride 2, no dilation, no indices: a
// vector's windows cover exactly the 2W floats of two loads per row, which
// split into the windows' left and right columns in one in-lane shuffle each
// (V::split_pairs, lanes in a fixed scrambled order). Each row's two columns
// are combined, then the two rows, and one permute (V::order_pairs) puts the
// lanes in order: 4 loads and 5 shuffles per vector, where the tap-by-tap
// loop makes 8 loads and 8 shuffles.
//
// The grouping ((a, b), (c, d)) of the row-major taps a, b, c, d gives the
// reference's bits: "take v when v > best or v is NaN" keeps the first maximum
// and the last NaN, and that rule is associative.
template <class V>
void max_forward_pairs(const Pool2dShape& s, const float* input, float* out) {
  using F = typename V::F;
  const Interior rows = interior(s.in_h, s.out_h, 2, s.stride_h, s.pad_h, 1);
  const Interior cols = interior(s.in_w, s.out_w, 2, 2, s.pad_w, 1);
  const int64_t W = V::kWidth;
  auto take = [](F best, F v) { return V::select(replaces<V>(best, v), v, best); };
  // The windows of one row of n lanes: 2n floats from p.
  auto row_max = [&](const float* p, int64_t n) {
    F lo, hi;
    if (n == W) {
      lo = V::load(p);
      hi = V::load(p + W);
    } else {
      lo = 2 * n >= W ? V::load(p) : V::load_partial(p, 2 * n);
      hi = 2 * n > W ? V::load_partial(p + W, 2 * n - W) : V::zero();
    }
    F left, right;
    V::split_pairs(lo, hi, left, right);
    return take(left, right);
  };
  parallel_for(s.planes * s.out_h, 4 * s.out_w, [&](int64_t b, int64_t e) {
    const float* chunk_end = out + e * s.out_w;
    for_rows(s, b, e, [&](int64_t p, int64_t oh) {
      const float* plane = input + p * s.in_h * s.in_w;
      float* out_row = out + (p * s.out_h + oh) * s.out_w;
      auto scalar = [&](int64_t ow) { max_window<false>(s, plane, oh, ow, out_row + ow, nullptr); };
      const float* top = plane + (oh * s.stride_h - s.pad_h) * s.in_w - s.pad_w;
      for_row_windows<V>(s, rows, cols, cols, oh, scalar, [&](int64_t ow, int64_t n) {
        const F best = V::order_pairs(take(row_max(top + 2 * ow, n), row_max(top + s.in_w + 2 * ow, n)));
        store_lanes<V>(out_row + ow, best, n, chunk_end);
      });
    });
  });
}

template <class V>
void vector_max_forward(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  const bool pairs = s.kernel_h == 2 && s.kernel_w == 2 && s.stride_w == 2 && s.dilation_h == 1 &&
                     s.dilation_w == 1;
  // Indices are tracked in 32-bit lanes.
  if (s.in_h * s.in_w > INT32_MAX) {
    max_forward(s, input, out, indices);
  } else if (pairs && indices == nullptr) {
    max_forward_pairs<V>(s, input, out);
  } else {
    with_fixed_window(s, [&](auto kh, auto kw, auto sw) {
      if (indices != nullptr) {
        max_forward_rows<V, true, kh(), kw(), sw()>(s, input, out, indices);
      } else {
        max_forward_rows<V, false, kh(), kw(), sw()>(s, input, out, nullptr);
      }
    });
  }
}

// x / count for a window of `count` elements. Where count is a power of two
// the quotient is x * (1 / count), the same correctly rounded value (the
// reciprocal is exact), and a vector divide costs several multiplies'
// throughput: in 2x2 pooling it was most of the time per output row.
template <class V>
struct WindowDivisor {
  typename V::F factor;
  bool reciprocal;
  explicit WindowDivisor(int64_t count)
      : factor(V::set1((count & (count - 1)) == 0 ? 1.0f / static_cast<float>(count) : static_cast<float>(count))),
        reciprocal((count & (count - 1)) == 0) {}
  typename V::F divide(typename V::F x) const { return reciprocal ? V::mul(x, factor) : V::div(x, factor); }
};

template <class V, int KH, int KW, int SW>
void avg_forward_rows(const Pool2dShape& s, bool count_include_pad, const float* input, float* out) {
  using F = typename V::F;
  const Interior rows = interior(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, 1);
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1);
  const Interior vcols = vector_columns<V>(s, cols);
  const int64_t stride = SW != 0 ? SW : s.stride_w;
  const int64_t kernel_h = KH != 0 ? KH : s.kernel_h, kernel_w = KW != 0 ? KW : s.kernel_w;
  // An interior window is never clipped, so both divisor rules give kh * kw.
  const WindowDivisor<V> divisor(s.kernel_h * s.kernel_w);
  parallel_for(s.planes * s.out_h, s.out_w * s.kernel_h * s.kernel_w, [&](int64_t b, int64_t e) {
    const float* chunk_end = out + e * s.out_w;
    for_rows(s, b, e, [&](int64_t p, int64_t oh) {
      const float* plane = input + p * s.in_h * s.in_w;
      float* out_row = out + (p * s.out_h + oh) * s.out_w;
      auto scalar = [&](int64_t ow) {
        avg_border(s, count_include_pad, plane, oh, ow, out_row + ow);
      };
      const int64_t h_start = oh * s.stride_h - s.pad_h;
      for_row_windows<V>(s, rows, cols, vcols, oh, scalar, [&](int64_t ow, int64_t n) {
        // 0 + first tap, as the reference's running sum starts (it turns -0 into +0).
        F sum = V::zero();
        for (int64_t i = 0; i < kernel_h; ++i) {
          const float* tap_row = plane + (h_start + i) * s.in_w - s.pad_w + ow * stride;
          for (int64_t j = 0; j < kernel_w; ++j) {
            sum = V::add(sum, load_taps<V>(tap_row + j, stride, n));
          }
        }
        store_lanes<V>(out_row + ow, divisor.divide(sum), n, chunk_end);
      });
    });
  });
}

template <class V>
void vector_avg_forward(const Pool2dShape& s, bool count_include_pad, const float* input, float* out) {
  with_fixed_window(s, [&](auto kh, auto kw, auto sw) {
    avg_forward_rows<V, kh(), kw(), sw()>(s, count_include_pad, input, out);
  });
}

// Input rows [first_row(oh), first_row(oh + 1)) belong to output row oh.
inline int64_t first_row(const Pool2dShape& s, int64_t oh) {
  if (oh <= 0) return 0;
  if (oh >= s.out_h) return s.in_h;
  return min64(max64(oh * s.stride_h - s.pad_h, 0), s.in_h);
}

// Expands one output row's shares into an input-width row, returned: row[c] =
// the sum of share[ow] over the windows ow that cover column c. `shares` has
// `front` zeros before share[0] and zeros after share[out_w - 1] (see
// vector_avg_backward); the row is built in `scratch` after pad_w floats of
// margin that take the columns before 0.
template <class V>
const float* expand_shares(const Pool2dShape& s, const float* shares, int64_t front,
                           float* scratch) {
  using F = typename V::F;
  const int64_t W = V::kWidth;
  const int64_t S = s.stride_w, kw = s.kernel_w, pad = s.pad_w;
  if (S <= 2) {
    // Phase r collects the taps j = q * S + r: phase[m] = sum over q of share[m - q];
    // column m * S + r - pad receives phase r at m.
    const int64_t m_end = (s.in_w + pad + S - 1) / S;
    float* row = scratch + pad;
    for (int64_t m = 0; m < m_end; m += W) {
      F phase[2] = {V::zero(), V::zero()};
      for (int64_t j = 0; j < kw; ++j) {
        phase[j % S] = V::add(phase[j % S], V::load(shares + front + m - j / S));
      }
      if (S == 1) {
        V::store(row + m - pad, phase[0]);
      } else {
        V::store_interleaved(row + 2 * m - pad, phase[0], phase[1]);
      }
    }
    return row;
  }
  float* row = scratch + pad;
  for (int64_t c = 0; c < s.in_w; ++c) row[c] = 0.0f;
  for (int64_t ow = 0; ow < s.out_w; ++ow) {
    const int64_t w0 = ow * S - pad;
    for (int64_t j = max64(0, -w0); j < kw && w0 + j < s.in_w; ++j) row[w0 + j] += shares[front + ow];
  }
  return row;
}

inline void zero_rows(float* p, int64_t rows, int64_t width) {
  std::memset(p, 0, static_cast<size_t>(rows * width) * sizeof(float));
}

// dst += row, or dst = 0 + row for a row's first contribution: the reference adds
// into a zero-filled gradient, which turns -0 into +0.
template <class V>
void add_row(float* dst, const float* row, int64_t n, bool fresh) {
  const int64_t W = V::kWidth;
  int64_t c = 0;
  for (; c + W <= n; c += W) V::store(dst + c, V::add(fresh ? V::zero() : V::load(dst + c), V::load(row + c)));
  if (c < n) {
    const typename V::F base = fresh ? V::zero() : V::load_partial(dst + c, n - c);
    V::store_partial(dst + c, V::add(base, V::load_partial(row + c, n - c)), n - c);
  }
}

// Avg backward of windows that tile the input two columns wide (kernel_w ==
// stride_w == 2, kernel_h == stride_h, no padding: LeNet's 2x2 pooling): each
// input element gets exactly one window's share, so an output row's shares,
// interleaved with themselves, are the input rows it covers. Columns and rows
// past the last window get zeros. The rows go in through add_row as first
// contributions, 0 + g / divisor, as the general path writes them.
inline bool tiles_in_pairs(const Pool2dShape& s) {
  return s.kernel_w == 2 && s.stride_w == 2 && s.kernel_h == s.stride_h && s.pad_h == 0 && s.pad_w == 0 &&
         s.dilation_h == 1 && s.dilation_w == 1 && 2 * s.out_w <= s.in_w && s.kernel_h * s.out_h <= s.in_h;
}

template <class V>
void avg_backward_pairs(const Pool2dShape& s, const float* grad_out, float* grad_input) {
  using F = typename V::F;
  const int64_t W = V::kWidth;
  const WindowDivisor<V> divisor(2 * s.kernel_h);
  const int64_t covered = 2 * s.out_w, rest = s.in_w - covered;
  parallel_for(s.planes * s.out_h, s.kernel_h * s.in_w, [&](int64_t b, int64_t e) {
    float* row = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(2 * (s.out_w + W)));
    int64_t p = b / s.out_h, oh = b % s.out_h;
    for (int64_t item = b; item < e; ++item) {
      const float* g = grad_out + item * s.out_w;
      for (int64_t ow = 0; ow < s.out_w; ow += W) {
        const int64_t n = s.out_w - ow < W ? s.out_w - ow : W;
        const F share = divisor.divide(n == W ? V::load(g + ow) : V::load_partial(g + ow, n));
        V::store_interleaved(row + 2 * ow, share, share);
      }
      float* plane = grad_input + p * s.in_h * s.in_w;
      for (int64_t h = oh * s.kernel_h; h < (oh + 1) * s.kernel_h; ++h) {
        float* dst = plane + h * s.in_w;
        add_row<V>(dst, row, covered, true);
        if (rest > 0) zero_rows(dst + covered, 1, rest);
      }
      // The rows below the last window belong to the plane's last output row.
      if (oh == s.out_h - 1) {
        const int64_t below = s.out_h * s.kernel_h;
        zero_rows(plane + below * s.in_w, s.in_h - below, s.in_w);
      }
      if (++oh == s.out_h) {
        oh = 0;
        ++p;
      }
    }
  });
}

template <class V>
void vector_avg_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_out,
                         float* grad_input) {
  // No window is clipped or padded there, so both divisor rules give kh * kw.
  if (tiles_in_pairs(s) && s.out_h > 0 && s.out_w > 0) return avg_backward_pairs<V>(s, grad_out, grad_input);
  const int64_t W = V::kWidth;
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1);
  const int64_t front = (s.kernel_w + s.stride_w - 1) / s.stride_w;
  // Shares: front zeros, out_w shares, then zeros for the widest over-read of expand_shares.
  const int64_t share_floats = front + s.out_w + s.in_w + s.pad_w + 2 * W;
  const int64_t scratch_floats = s.pad_w + 2 * (s.in_w + s.pad_w + 2 * W);
  const int64_t plane_size = s.in_h * s.in_w;
  parallel_for(s.planes * s.out_h, 2 * s.kernel_h * s.in_w, [&](int64_t b, int64_t e) {
    float* shares = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(share_floats));
    float* scratch = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(scratch_floats));
    for (int64_t k = 0; k < share_floats; ++k) shares[k] = 0.0f;
    int64_t item = b;
    while (item < e) {
      const int64_t p = item / s.out_h;
      const int64_t oh_begin = item % s.out_h;
      const int64_t oh_end = min64(s.out_h, oh_begin + (e - item));
      item += oh_end - oh_begin;
      float* plane = grad_input + p * plane_size;
      const int64_t r0 = first_row(s, oh_begin), r1 = first_row(s, oh_end);
      int64_t filled = r0;  // rows [r0, filled) hold their first contribution or zeros
      // The first output row whose windows can reach r0.
      const int64_t oh_first = max64(0, (r0 + s.pad_h - s.kernel_h) / s.stride_h);
      for (int64_t oh = oh_first; oh < s.out_h; ++oh) {
        const int64_t top = oh * s.stride_h - s.pad_h;
        const int64_t h0 = max64(top, r0), h1 = min64(min64(top + s.kernel_h, s.in_h), r1);
        if (top >= r1) break;
        if (h0 >= h1) continue;
        const float* g = grad_out + (p * s.out_h + oh) * s.out_w;
        const int64_t padded_h = min64(top + s.kernel_h, s.in_h + s.pad_h) - top;
        const int64_t clipped_h = min64(top + s.kernel_h, s.in_h) - max64(top, 0);
        const int64_t row_factor = count_include_pad ? padded_h : clipped_h;
        float* share = shares + front;
        int64_t ow = 0;
        auto border = [&](int64_t o) {
          int64_t a, bb, c, d;
          share[o] = g[o] / static_cast<float>(avg_window(s, count_include_pad, oh, o, a, bb, c, d));
        };
        for (; ow < cols.lo; ++ow) border(ow);
        const WindowDivisor<V> divisor(row_factor * s.kernel_w);
        for (; ow + W <= cols.hi; ow += W) V::store(share + ow, divisor.divide(V::load(g + ow)));
        if (ow < cols.hi) {
          const int64_t n = cols.hi - ow;
          V::store_partial(share + ow, divisor.divide(V::load_partial(g + ow, n)), n);
          ow = cols.hi;
        }
        for (; ow < s.out_w; ++ow) border(ow);
        const float* row = expand_shares<V>(s, shares, front, scratch);
        for (int64_t h = h0; h < h1; ++h) {
          const bool fresh = h >= filled;
          if (fresh) {
            zero_rows(plane + filled * s.in_w, h - filled, s.in_w);
            filled = h + 1;
          }
          add_row<V>(plane + h * s.in_w, row, s.in_w, fresh);
        }
      }
      zero_rows(plane + filled * s.in_w, r1 - filled, s.in_w);
    }
  });
}

}  // namespace
}  // namespace cnnkit
