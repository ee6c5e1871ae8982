// The pooling windows, defined once for the CPU reference and the CUDA kernels (CNNKIT_HD): which
// input rows/columns a window reads, the average's divisor and the max scan.
#pragma once
#include <math.h>

#include <cstdint>

#include "cnnkit/pool.h"
#include "cuda/common/hd.h"

namespace cnnkit {

// Input rows (or columns) a window touches: [begin, end) in steps of dilation,
// starting at the first tap that is not in the padding.
struct Span {
  int64_t begin, end;
};

CNNKIT_HD Span window_span(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  int64_t begin = o * stride - pad;
  const int64_t last = begin + (kernel - 1) * dilation + 1;
  const int64_t end = last < in ? last : in;
  while (begin < 0) begin += dilation;
  return {begin, end};
}

// PyTorch's avg divisor: the window clipped to the padded input (so a ceil_mode
// overhang past the padding is not counted) or, without count_include_pad, to
// the input itself. Returns the input window in [h0, h1) x [w0, w1).
CNNKIT_HD int64_t avg_window(const Pool2dShape& s, bool count_include_pad, int64_t oh, int64_t ow, int64_t& h0,
                             int64_t& h1, int64_t& w0, int64_t& w1) {
  h0 = oh * s.stride_h - s.pad_h;
  w0 = ow * s.stride_w - s.pad_w;
  h1 = h0 + s.kernel_h < s.in_h + s.pad_h ? h0 + s.kernel_h : s.in_h + s.pad_h;
  w1 = w0 + s.kernel_w < s.in_w + s.pad_w ? w0 + s.kernel_w : s.in_w + s.pad_w;
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  h1 = h1 < s.in_h ? h1 : s.in_h;
  w1 = w1 < s.in_w ? w1 : s.in_w;
  return count_include_pad ? padded_size : (h1 - h0) * (w1 - w0);
}

// Max pooling's scan of output (oh, ow) over one input plane, as PyTorch's: a NaN wins (the last
// one), ties keep the first maximum. Returns the maximum; best_index gets its offset in the plane.
CNNKIT_HD float window_max(const Pool2dShape& s, const float* plane, int64_t oh, int64_t ow, int64_t& best_index) {
  const Span hs = window_span(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  const Span ws = window_span(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  float best = -INFINITY;
  best_index = hs.begin * s.in_w + ws.begin;
  for (int64_t h = hs.begin; h < hs.end; h += s.dilation_h) {
    for (int64_t w = ws.begin; w < ws.end; w += s.dilation_w) {
      const float v = plane[h * s.in_w + w];
      if (v > best || v != v) {
        best = v;
        best_index = h * s.in_w + w;
      }
    }
  }
  return best;
}

}  // namespace cnnkit
