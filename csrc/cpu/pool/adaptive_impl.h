// Adaptive average pooling on a range of planes, as plain loops over
// contiguous rows that the *_avx2.cpp / *_avx512.cpp builds vectorise: the
// forward adds a window's rows into double column sums (independent lanes, no
// reassociation), then sums each window's columns; the backward spreads each
// output's share over its window's rows. No products are formed, so no FMA
// contraction can change a bit between the builds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cnnkit/pool.h"

namespace cnnkit {
namespace {

// PyTorch's window [floor(i n / out), ceil((i + 1) n / out)).
inline int64_t window_start(int64_t i, int64_t n, int64_t out) { return i * n / out; }
inline int64_t window_end(int64_t i, int64_t n, int64_t out) { return ((i + 1) * n + out - 1) / out; }

inline void adaptive_forward_planes(const AdaptivePoolShape& s, const float* input, float* out,
                                    int64_t p0, int64_t p1) {
  std::vector<double> columns(static_cast<size_t>(s.in_w));
  double* col = columns.data();
  for (int64_t p = p0; p < p1; ++p) {
    const float* x = input + p * s.in_h * s.in_w;
    float* y = out + p * s.out_h * s.out_w;
    for (int64_t i = 0; i < s.out_h; ++i) {
      const int64_t h0 = window_start(i, s.in_h, s.out_h), h1 = window_end(i, s.in_h, s.out_h);
      for (int64_t w = 0; w < s.in_w; ++w) col[w] = 0.0;
      for (int64_t h = h0; h < h1; ++h) {
        const float* row = x + h * s.in_w;
        for (int64_t w = 0; w < s.in_w; ++w) col[w] += row[w];
      }
      for (int64_t j = 0; j < s.out_w; ++j) {
        const int64_t w0 = window_start(j, s.in_w, s.out_w), w1 = window_end(j, s.in_w, s.out_w);
        double sum = 0.0;
        for (int64_t w = w0; w < w1; ++w) sum += col[w];
        y[i * s.out_w + j] = static_cast<float>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

inline void adaptive_backward_planes(const AdaptivePoolShape& s, const float* grad_out,
                                     float* grad_input, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* g = grad_out + p * s.out_h * s.out_w;
    float* dx = grad_input + p * s.in_h * s.in_w;
    for (int64_t k = 0; k < s.in_h * s.in_w; ++k) dx[k] = 0.0f;
    for (int64_t i = 0; i < s.out_h; ++i) {
      const int64_t h0 = window_start(i, s.in_h, s.out_h), h1 = window_end(i, s.in_h, s.out_h);
      for (int64_t j = 0; j < s.out_w; ++j) {
        const int64_t w0 = window_start(j, s.in_w, s.out_w), w1 = window_end(j, s.in_w, s.out_w);
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
