#include <math.h>

#include "cpu/pool/window.h"
#include "cuda/common/launch.cuh"
#include "cuda/pool/pool.h"

namespace cnnkit::cuda {

namespace {

// The outputs along one axis whose windows have a tap at input position i: o with
// o * stride - pad + k * dilation = i for some tap k, visited by k (so in decreasing o).
template <class Visit>
CNNKIT_HD void outputs_reaching(int64_t i, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                                Visit&& visit) {
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t t = i + pad - k * dilation;
    if (t < 0) break;
    if (t % stride == 0 && t / stride < out) visit(t / stride);
  }
}

// One output: the reference's scan (NaN wins, the last NaN; ties keep the first maximum).
struct MaxForward {
  Pool2dShape s;
  const float* x;
  float* y;
  int64_t* indices;
  CNNKIT_HD void operator()(int64_t o) const {
    const int64_t ow = o % s.out_w, oh = (o / s.out_w) % s.out_h, p = o / (s.out_w * s.out_h);
    int64_t best_index = 0;
    y[o] = window_max(s, x + p * s.in_h * s.in_w, oh, ow, best_index);
    if (indices) indices[o] = best_index;
  }
};

// One input element: the gradients of the outputs that chose it.
struct MaxBackward {
  Pool2dShape s;
  const float* dy;
  const int64_t* indices;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t w = i % s.in_w, h = (i / s.in_w) % s.in_h, p = i / (s.in_w * s.in_h);
    const int64_t here = h * s.in_w + w, base = p * s.out_h * s.out_w;
    float sum = 0.0f;
    outputs_reaching(h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h, [&](int64_t oh) {
      outputs_reaching(w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w, [&](int64_t ow) {
        const int64_t o = base + oh * s.out_w + ow;
        if (indices[o] == here) sum += dy[o];
      });
    });
    dx[i] = sum;
  }
};

CNNKIT_HD bool is_tap(int64_t i, int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  const Span span = window_span(o, in, kernel, stride, pad, dilation);
  return i >= span.begin && i < span.end && (i - span.begin) % dilation == 0;
}

// After MaxBackward: an output whose index is not a tap of its window poisons its plane.
struct MaxIndexCheck {
  Pool2dShape s;
  const int64_t* indices;
  float* dx;
  CNNKIT_HD void operator()(int64_t o) const {
    const int64_t ow = o % s.out_w, oh = (o / s.out_w) % s.out_h, p = o / (s.out_w * s.out_h);
    const int64_t index = indices[o];
    const bool ok = index >= 0 && index < s.in_h * s.in_w &&
                    is_tap(index / s.in_w, oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h) &&
                    is_tap(index % s.in_w, ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
    if (ok) return;
    for (int64_t k = 0; k < s.in_h * s.in_w; ++k) dx[p * s.in_h * s.in_w + k] = NAN;
  }
};

CNNKIT_HD int64_t divisor_of(const Pool2dShape& s, bool include_pad, int64_t override_, int64_t oh, int64_t ow,
                             int64_t& h0, int64_t& h1, int64_t& w0, int64_t& w1) {
  const int64_t d = avg_window(s, include_pad, oh, ow, h0, h1, w0, w1);
  return override_ != 0 ? override_ : d;
}

// One output: the window's sum in row-major order over its divisor (the reference's rounding).
struct AvgForward {
  Pool2dShape s;
  bool include_pad;
  int64_t divisor_override;
  const float* x;
  float* y;
  CNNKIT_HD void operator()(int64_t o) const {
    const int64_t ow = o % s.out_w, oh = (o / s.out_w) % s.out_h, p = o / (s.out_w * s.out_h);
    const float* plane = x + p * s.in_h * s.in_w;
    int64_t h0, h1, w0, w1;
    const int64_t divisor = divisor_of(s, include_pad, divisor_override, oh, ow, h0, h1, w0, w1);
    float sum = 0.0f;
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.in_w + w];
    }
    y[o] = sum / static_cast<float>(divisor);
  }
};

// One input element: the sum of dy / divisor over the windows that hold it.
struct AvgBackward {
  Pool2dShape s;
  bool include_pad;
  int64_t divisor_override;
  const float* dy;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t w = i % s.in_w, h = (i / s.in_w) % s.in_h, p = i / (s.in_w * s.in_h);
    const int64_t base = p * s.out_h * s.out_w;
    float sum = 0.0f;
    outputs_reaching(h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, 1, [&](int64_t oh) {
      outputs_reaching(w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1, [&](int64_t ow) {
        int64_t h0, h1, w0, w1;
        const int64_t divisor = divisor_of(s, include_pad, divisor_override, oh, ow, h0, h1, w0, w1);
        sum += dy[base + oh * s.out_w + ow] / static_cast<float>(divisor);
      });
    });
    dx[i] = sum;
  }
};

CNNKIT_HD int64_t adaptive_begin(int64_t o, int64_t in, int64_t out) { return o * in / out; }
CNNKIT_HD int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

struct AdaptiveGeometry {
  int64_t in_h, in_w, out_h, out_w;
};

struct AdaptiveForward {
  AdaptiveGeometry g;
  const float* x;
  float* y;
  CNNKIT_HD void operator()(int64_t o) const {
    const int64_t ow = o % g.out_w, oh = (o / g.out_w) % g.out_h, p = o / (g.out_w * g.out_h);
    const float* plane = x + p * g.in_h * g.in_w;
    const int64_t h0 = adaptive_begin(oh, g.in_h, g.out_h), h1 = adaptive_end(oh, g.in_h, g.out_h);
    const int64_t w0 = adaptive_begin(ow, g.in_w, g.out_w), w1 = adaptive_end(ow, g.in_w, g.out_w);
    double sum = 0.0;  // the CPU op averages in double too
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t w = w0; w < w1; ++w) sum += plane[h * g.in_w + w];
    }
    y[o] = static_cast<float>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
  }
};

// The outputs along one axis whose adaptive windows hold i: a window starts at most at i, and
// windows overlap by less than one stride, so only o near i * out / in qualify.
template <class Visit>
CNNKIT_HD void adaptive_outputs_reaching(int64_t i, int64_t in, int64_t out, Visit&& visit) {
  const int64_t first = i * out / in > 0 ? i * out / in - 1 : 0;
  for (int64_t o = first; o < out && adaptive_begin(o, in, out) <= i; ++o) {
    if (i < adaptive_end(o, in, out)) visit(o);
  }
}

struct AdaptiveBackward {
  AdaptiveGeometry g;
  const float* dy;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    const int64_t base = p * g.out_h * g.out_w;
    float sum = 0.0f;
    adaptive_outputs_reaching(h, g.in_h, g.out_h, [&](int64_t oh) {
      const int64_t rows = adaptive_end(oh, g.in_h, g.out_h) - adaptive_begin(oh, g.in_h, g.out_h);
      adaptive_outputs_reaching(w, g.in_w, g.out_w, [&](int64_t ow) {
        const int64_t cols = adaptive_end(ow, g.in_w, g.out_w) - adaptive_begin(ow, g.in_w, g.out_w);
        sum += dy[base + oh * g.out_w + ow] / static_cast<float>(rows * cols);
      });
    });
    dx[i] = sum;
  }
};

}  // namespace

void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* indices, const Where& where) {
  for_each(MaxForward{s, x, y, indices}, s.planes * s.out_h * s.out_w, where, "max_pool2d");
}

void max_pool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* indices, float* dx, const Where& where) {
  for_each(MaxBackward{s, dy, indices, dx}, s.planes * s.in_h * s.in_w, where, "max_pool2d_backward");
  for_each(MaxIndexCheck{s, indices, dx}, s.planes * s.out_h * s.out_w, where, "max_pool2d_backward");
}

void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, int64_t divisor_override, const float* x,
                        float* y, const Where& where) {
  for_each(AvgForward{s, count_include_pad, divisor_override, x, y}, s.planes * s.out_h * s.out_w, where,
           "avg_pool2d");
}

void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, int64_t divisor_override, const float* dy,
                         float* dx, const Where& where) {
  for_each(AvgBackward{s, count_include_pad, divisor_override, dy, dx}, s.planes * s.in_h * s.in_w, where,
           "avg_pool2d_backward");
}

void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                 const float* x, float* y, const Where& where) {
  for_each(AdaptiveForward{{in_h, in_w, out_h, out_w}, x, y}, planes * out_h * out_w, where, "adaptive_avg_pool2d");
}

void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                  const float* dy, float* dx, const Where& where) {
  for_each(AdaptiveBackward{{in_h, in_w, out_h, out_w}, dy, dx}, planes * in_h * in_w, where,
           "adaptive_avg_pool2d_backward");
}

}  // namespace cnnkit::cuda
