// Direct pooling, threaded over the N*C planes. Each output row is split into
// border columns (windows that touch the padding or are clipped: handled one
// window at a time with bounds) and an interior run whose windows lie wholly in
// the input. The interior loops over kernel taps outside and output columns
// inside, so the inner loop is a bounds-check-free strided sweep the compiler
// vectorises (stride 1 and 2 get compile-time strides for that). Per output the
// taps are visited in the reference's row-major order, so forward results are
// bit-identical to it.
//
// Included by one file per ISA, each compiled with its own flags; everything
// here has internal linkage so the linker can never mix code built for
// different ISAs.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cnnkit/pool.h"
#include "cpu/pool/window.h"
#include "core/parallel.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

// Local helpers instead of std::min/std::max/numeric_limits: no STL template
// is instantiated in an ISA-specific translation unit.
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
constexpr float kMinusInf = -__builtin_inff();

// Output positions [lo, hi) along one axis whose window lies wholly in the input.
struct Interior {
  int64_t lo, hi;
};

inline Interior interior(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation) {
  const int64_t lo = min64(out, (pad + stride - 1) / stride);
  const int64_t last_start = in + pad - ((kernel - 1) * dilation + 1);  // bound on o * stride
  const int64_t hi = last_start < 0 ? 0 : min64(out, last_start / stride + 1);
  return {lo, max64(lo, hi)};
}

// First tap of a window clipped to the input and the end of its extent.
inline void clip_taps(int64_t start, int64_t kernel, int64_t dilation, int64_t in, int64_t& begin,
                      int64_t& end) {
  end = min64(start + (kernel - 1) * dilation + 1, in);
  begin = start < 0 ? start + (-start + dilation - 1) / dilation * dilation : start;
}

template <bool kIndices>
inline void max_window(const Pool2dShape& s, const float* plane, int64_t oh, int64_t ow,
                       float* out, int64_t* index) {
  int64_t h0, h1, w0, w1;
  clip_taps(oh * s.stride_h - s.pad_h, s.kernel_h, s.dilation_h, s.in_h, h0, h1);
  clip_taps(ow * s.stride_w - s.pad_w, s.kernel_w, s.dilation_w, s.in_w, w0, w1);
  float best = kMinusInf;
  int64_t best_index = h0 * s.in_w + w0;
  for (int64_t h = h0; h < h1; h += s.dilation_h) {
    for (int64_t w = w0; w < w1; w += s.dilation_w) {
      const float v = plane[h * s.in_w + w];
      if (v > best || v != v) {
        best = v;
        best_index = h * s.in_w + w;
      }
    }
  }
  *out = best;
  if (kIndices) *index = best_index;
}

// kStride > 0 fixes the column stride at compile time; 0 reads it from s.
template <bool kIndices, int64_t kStride>
void max_interior_run(const Pool2dShape& s, const float* __restrict__ plane, int64_t oh,
                      Interior cols, float* __restrict__ out_row,
                      int64_t* __restrict__ index_row) {
  if (cols.lo >= cols.hi) return;
  const int64_t stride = kStride > 0 ? kStride : s.stride_w;
  const int64_t h_start = oh * s.stride_h - s.pad_h;
  for (int64_t ow = cols.lo; ow < cols.hi; ++ow) {
    out_row[ow] = kMinusInf;
    if (kIndices) index_row[ow] = h_start * s.in_w + ow * stride - s.pad_w;
  }
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const int64_t tap = (h_start + i * s.dilation_h) * s.in_w - s.pad_w + j * s.dilation_w;
      for (int64_t ow = cols.lo; ow < cols.hi; ++ow) {
        const float v = plane[tap + ow * stride];
        const float b = out_row[ow];
        const bool take = v > b || v != v;
        out_row[ow] = take ? v : b;
        if (kIndices) index_row[ow] = take ? tap + ow * stride : index_row[ow];
      }
    }
  }
}

template <bool kIndices>
void max_forward_planes(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  const Interior rows = interior(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  const int64_t work = work_per_item(s.planes, {s.out_h, s.out_w, s.kernel_h, s.kernel_w});
  parallel_for(s.planes, work, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* plane = input + p * s.in_h * s.in_w;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const int64_t row = (p * s.out_h + oh) * s.out_w;
        float* out_row = out + row;
        int64_t* index_row = kIndices ? indices + row : nullptr;
        const Interior run = (oh >= rows.lo && oh < rows.hi) ? cols : Interior{0, 0};
        auto border = [&](int64_t ow) {
          max_window<kIndices>(s, plane, oh, ow, out_row + ow, kIndices ? index_row + ow : nullptr);
        };
        for (int64_t ow = 0; ow < run.lo; ++ow) border(ow);
        if (s.stride_w == 1) {
          max_interior_run<kIndices, 1>(s, plane, oh, run, out_row, index_row);
        } else if (s.stride_w == 2) {
          max_interior_run<kIndices, 2>(s, plane, oh, run, out_row, index_row);
        } else {
          max_interior_run<kIndices, 0>(s, plane, oh, run, out_row, index_row);
        }
        for (int64_t ow = run.hi; ow < s.out_w; ++ow) border(ow);
      }
    }
  });
}

void max_forward(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  if (indices != nullptr) {
    max_forward_planes<true>(s, input, out, indices);
  } else {
    max_forward_planes<false>(s, input, out, nullptr);
  }
}

void max_backward(const Pool2dShape& s, const float* grad_out, const int64_t* indices,
                  float* grad_input) {
  const int64_t plane_size = s.in_h * s.in_w;
  const int64_t outputs = s.out_h * s.out_w;
  parallel_for(s.planes, plane_size + outputs, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      float* plane = grad_input + p * plane_size;
      std::memset(plane, 0, static_cast<size_t>(plane_size) * sizeof(float));
      const float* g = grad_out + p * outputs;
      const int64_t* idx = indices + p * outputs;
      for (int64_t o = 0; o < outputs; ++o) plane[idx[o]] += g[o];
    }
  });
}

template <int64_t kStride>
void avg_interior_run(const Pool2dShape& s, const float* __restrict__ plane, int64_t oh,
                      Interior cols, float* __restrict__ out_row) {
  if (cols.lo >= cols.hi) return;
  const int64_t stride = kStride > 0 ? kStride : s.stride_w;
  const int64_t h_start = oh * s.stride_h - s.pad_h;
  for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out_row[ow] = 0.0f;
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const int64_t tap = (h_start + i) * s.in_w - s.pad_w + j;
      for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out_row[ow] += plane[tap + ow * stride];
    }
  }
  // An interior window is never clipped, so both divisor rules give kh * kw.
  const float divisor = static_cast<float>(s.kernel_h * s.kernel_w);
  for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out_row[ow] /= divisor;
}

void avg_border(const Pool2dShape& s, bool count_include_pad, const float* plane, int64_t oh,
                int64_t ow, float* out) {
  int64_t h0, h1, w0, w1;
  const int64_t divisor = avg_window(s, count_include_pad, oh, ow, h0, h1, w0, w1);
  float sum = 0.0f;
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.in_w + w];
  }
  *out = sum / static_cast<float>(divisor);
}

inline void avg_forward(const Pool2dShape& s, bool count_include_pad, const float* input,
                        float* out) {
  const Interior rows = interior(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, 1);
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1);
  const int64_t work = work_per_item(s.planes, {s.out_h, s.out_w, s.kernel_h, s.kernel_w});
  parallel_for(s.planes, work, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* plane = input + p * s.in_h * s.in_w;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        float* out_row = out + (p * s.out_h + oh) * s.out_w;
        const Interior run = (oh >= rows.lo && oh < rows.hi) ? cols : Interior{0, 0};
        for (int64_t ow = 0; ow < run.lo; ++ow) {
          avg_border(s, count_include_pad, plane, oh, ow, out_row + ow);
        }
        if (s.stride_w == 1) {
          avg_interior_run<1>(s, plane, oh, run, out_row);
        } else if (s.stride_w == 2) {
          avg_interior_run<2>(s, plane, oh, run, out_row);
        } else {
          avg_interior_run<0>(s, plane, oh, run, out_row);
        }
        for (int64_t ow = run.hi; ow < s.out_w; ++ow) {
          avg_border(s, count_include_pad, plane, oh, ow, out_row + ow);
        }
      }
    }
  });
}

template <int64_t kStride>
void avg_backward_interior_run(const Pool2dShape& s, const float* __restrict__ scaled_row,
                               int64_t oh, Interior cols, float* __restrict__ plane) {
  if (cols.lo >= cols.hi) return;
  const int64_t stride = kStride > 0 ? kStride : s.stride_w;
  const int64_t h_start = oh * s.stride_h - s.pad_h;
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const int64_t tap = (h_start + i) * s.in_w - s.pad_w + j;
      for (int64_t ow = cols.lo; ow < cols.hi; ++ow) plane[tap + ow * stride] += scaled_row[ow];
    }
  }
}

inline void avg_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_out,
                         float* grad_input) {
  const Interior rows = interior(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, 1);
  const Interior cols = interior(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1);
  const int64_t plane_size = s.in_h * s.in_w;
  const int64_t windows = work_per_item(s.planes, {s.out_h, s.out_w, s.kernel_h, s.kernel_w});
  const int64_t work = windows + std::min(plane_size, INT64_MAX / std::max<int64_t>(s.planes, 1) - windows);
  const float interior_divisor = static_cast<float>(s.kernel_h * s.kernel_w);
  parallel_for(s.planes, work, [&](int64_t begin, int64_t end) {
    float* scaled = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(s.out_w));
    for (int64_t p = begin; p < end; ++p) {
      float* plane = grad_input + p * plane_size;
      std::memset(plane, 0, static_cast<size_t>(plane_size) * sizeof(float));
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const float* g = grad_out + (p * s.out_h + oh) * s.out_w;
        const Interior run = (oh >= rows.lo && oh < rows.hi) ? cols : Interior{0, 0};
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          if (ow >= run.lo && ow < run.hi) continue;
          int64_t h0, h1, w0, w1;
          const int64_t divisor = avg_window(s, count_include_pad, oh, ow, h0, h1, w0, w1);
          const float share = g[ow] / static_cast<float>(divisor);
          for (int64_t h = h0; h < h1; ++h) {
            for (int64_t w = w0; w < w1; ++w) plane[h * s.in_w + w] += share;
          }
        }
        if (run.lo < run.hi) {
          for (int64_t ow = run.lo; ow < run.hi; ++ow) scaled[ow] = g[ow] / interior_divisor;
          if (s.stride_w == 1) {
            avg_backward_interior_run<1>(s, scaled, oh, run, plane);
          } else {
            avg_backward_interior_run<0>(s, scaled, oh, run, plane);
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
