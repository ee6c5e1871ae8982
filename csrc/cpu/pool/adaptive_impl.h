// Adaptive average pooling on a range of planes, as plain loops over
// contiguous rows that the *_avx2.cpp / *_avx512.cpp builds vectorise: the
// forward adds a window's rows into double column sums (independent lanes, no
// reassociation), then sums each window's columns; the backward spreads each
// output's share over its window's rows. No products are formed, so no FMA
// contraction can change a bit between the builds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cnnkit/pool.h"

namespace cnnkit {
namespace {

// PyTorch's window [floor(i n / out), ceil((i + 1) n / out)).
inline int64_t window_start(int64_t i, int64_t n, int64_t out) { return i * n / out; }
inline int64_t window_end(int64_t i, int64_t n, int64_t out) { return ((i + 1) * n + out - 1) / out; }

// Every window's bounds along one axis, worked out once per call rather than
// per plane: with small planes (global pooling of 1x1 or 2x2 maps over
// thousands of planes) the four 64-bit divisions per window cost more than
// the sums.
struct AxisWindows {
  std::vector<int64_t> begin, end;
  AxisWindows(int64_t n, int64_t out) : begin(static_cast<size_t>(out)), end(static_cast<size_t>(out)) {
    for (int64_t i = 0; i < out; ++i) {
      begin[static_cast<size_t>(i)] = window_start(i, n, out);
      end[static_cast<size_t>(i)] = window_end(i, n, out);
    }
  }
};

// Global pooling (one window per plane), the common case after a network's
// last convolution: each plane's double sum, divided once. The general loop
// below goes through a column-sum buffer per window, which for 1x1 and 2x2
// maps over thousands of planes costs ten times the reads.
inline void global_forward_planes(const AdaptivePoolShape& s, const float* input, float* out, int64_t p0,
                                  int64_t p1) {
  const int64_t plane = s.in_h * s.in_w;
  if (plane == 1) {  // each mean is its one value (vgg11's 1x1 maps): a copy, not a division per plane
    std::memcpy(out + p0, input + p0, static_cast<size_t>(p1 - p0) * sizeof(float));
    return;
  }
  const double count = static_cast<double>(plane);
  for (int64_t p = p0; p < p1; ++p) {
    const float* x = input + p * plane;
    if (plane < 8) {
      double sum = 0.0;
      for (int64_t k = 0; k < plane; ++k) sum += x[k];
      out[p] = static_cast<float>(sum / count);
      continue;
    }
    // Eight running sums in a fixed pattern (the same in every build), so the
    // adds of a larger plane do not wait on each other.
    double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int64_t k = 0;
    for (; k + 8 <= plane; k += 8) {
      for (int l = 0; l < 8; ++l) lanes[l] += x[k + l];
    }
    for (int l = 0; k < plane; ++k, ++l) lanes[l] += x[k];
    const double sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    out[p] = static_cast<float>(sum / count);
  }
}

inline void adaptive_forward_planes(const AdaptivePoolShape& s, const float* input, float* out,
                                    int64_t p0, int64_t p1) {
  if (s.out_h == 1 && s.out_w == 1) {
    global_forward_planes(s, input, out, p0, p1);
    return;
  }
  const AxisWindows rows(s.in_h, s.out_h), cols(s.in_w, s.out_w);
  std::vector<double> columns(static_cast<size_t>(s.in_w));
  double* col = columns.data();
  for (int64_t p = p0; p < p1; ++p) {
    const float* x = input + p * s.in_h * s.in_w;
    float* y = out + p * s.out_h * s.out_w;
    for (int64_t i = 0; i < s.out_h; ++i) {
      const int64_t h0 = rows.begin[static_cast<size_t>(i)], h1 = rows.end[static_cast<size_t>(i)];
      for (int64_t w = 0; w < s.in_w; ++w) col[w] = 0.0;
      for (int64_t h = h0; h < h1; ++h) {
        const float* row = x + h * s.in_w;
        for (int64_t w = 0; w < s.in_w; ++w) col[w] += row[w];
      }
      for (int64_t j = 0; j < s.out_w; ++j) {
        const int64_t w0 = cols.begin[static_cast<size_t>(j)], w1 = cols.end[static_cast<size_t>(j)];
        double sum = 0.0;
        for (int64_t w = w0; w < w1; ++w) sum += col[w];
        y[i * s.out_w + j] = static_cast<float>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

inline void adaptive_backward_planes(const AdaptivePoolShape& s, const float* grad_out,
                                     float* grad_input, int64_t p0, int64_t p1) {
  if (s.out_h == 1 && s.out_w == 1) {
    // Global pooling: every input of a plane gets the same share.
    const int64_t plane = s.in_h * s.in_w;
    for (int64_t p = p0; p < p1; ++p) {
      const float share = static_cast<float>(static_cast<double>(grad_out[p]) / static_cast<double>(plane));
      float* dx = grad_input + p * plane;
      for (int64_t k = 0; k < plane; ++k) dx[k] = share;
    }
    return;
  }
  const AxisWindows rows(s.in_h, s.out_h), cols(s.in_w, s.out_w);
  for (int64_t p = p0; p < p1; ++p) {
    const float* g = grad_out + p * s.out_h * s.out_w;
    float* dx = grad_input + p * s.in_h * s.in_w;
    for (int64_t k = 0; k < s.in_h * s.in_w; ++k) dx[k] = 0.0f;
    for (int64_t i = 0; i < s.out_h; ++i) {
      const int64_t h0 = rows.begin[static_cast<size_t>(i)], h1 = rows.end[static_cast<size_t>(i)];
      for (int64_t j = 0; j < s.out_w; ++j) {
        const int64_t w0 = cols.begin[static_cast<size_t>(j)], w1 = cols.end[static_cast<size_t>(j)];
        const float share = static_cast<float>(static_cast<double>(g[i * s.out_w + j]) /
                                               static_cast<double>((h1 - h0) * (w1 - w0)));
        for (int64_t h = h0; h < h1; ++h) {
          float* row = dx + h * s.in_w;
          for (int64_t w = w0; w < w1; ++w) row[w] += share;
        }
      }
    }
  }
}

}  // namespace
}  // namespace cnnkit
