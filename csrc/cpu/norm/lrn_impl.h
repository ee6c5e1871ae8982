// Local response normalisation on one unit (an image's channels at a block of
// positions), as plain loops over the block that the *_avx2.cpp / *_avx512.cpp
// builds vectorise. The channel window's sum of squares slides: each channel
// is added once as the window reaches it and subtracted once as it leaves, in
// double, so a window costs O(1) instead of O(size).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cnnkit/norm.h"

namespace cnnkit {
namespace {

// Positions per unit: a few KB of double accumulators, in L1.
constexpr int64_t kLrnBlock = 256;

// power[l] = scale^-beta with scale = k + coef * acc[l], one loop per case so
// each vectorises: the exponents of common models as square roots and
// divisions (exact to double rounding, much cheaper than pow), pow otherwise.
// `scale` (may be null) receives the scales.
inline void lrn_powers(const double* acc, int64_t len, double k, double coef, double beta,
                       double* power, double* scale) {
  for (int64_t l = 0; l < len; ++l) power[l] = k + coef * acc[l];
  if (scale) std::copy(power, power + len, scale);
  if (beta == 0.75) {
    for (int64_t l = 0; l < len; ++l) {
      const double r = std::sqrt(power[l]);
      power[l] = 1.0 / (r * std::sqrt(r));
    }
  } else if (beta == 0.5) {
    for (int64_t l = 0; l < len; ++l) power[l] = 1.0 / std::sqrt(power[l]);
  } else if (beta == 1.0) {
    for (int64_t l = 0; l < len; ++l) power[l] = 1.0 / power[l];
  } else {
    for (int64_t l = 0; l < len; ++l) power[l] = std::pow(power[l], -beta);
  }
}

// acc[l] += sign * v[l]^2 for the inputs, sign * v[l] for the backward's terms; l < len.
inline void lrn_slide(double* acc, const float* v, int64_t len, double sign) {
  for (int64_t l = 0; l < len; ++l) acc[l] += sign * (static_cast<double>(v[l]) * v[l]);
}
inline void lrn_slide(double* acc, const double* v, int64_t len, double sign) {
  for (int64_t l = 0; l < len; ++l) acc[l] += sign * v[l];
}

template <class T>
bool lrn_all_finite(const T* v, int64_t stride, int64_t rows, int64_t len) {
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t l = 0; l < len; ++l) finite &= std::isfinite(v[r * stride + l]);
  }
  return finite;
}

// acc = the window sum [c - before, c + after] (within [0, C)) of rows of v,
// for c = 0, 1, ... in turn: slid while every value is finite, else summed anew
// for each c, so that a NaN or inf spoils only the windows holding it (inf - inf
// would leave NaN in every later window).
template <class T>
struct LrnWindow {
  double* acc;
  const T* v;
  int64_t stride, len, channels, before, after;
  bool slide;

  void start() {
    std::fill(acc, acc + len, 0.0);
    if (!slide) return;
    for (int64_t c = 0; c < std::min(after, channels); ++c) lrn_slide(acc, v + c * stride, len, 1.0);
  }
  void enter(int64_t c) {
    if (slide) {
      if (c + after < channels) lrn_slide(acc, v + (c + after) * stride, len, 1.0);
      return;
    }
    std::fill(acc, acc + len, 0.0);
    for (int64_t d = std::max<int64_t>(0, c - before); d <= std::min(channels - 1, c + after); ++d) {
      lrn_slide(acc, v + d * stride, len, 1.0);
    }
  }
  void leave(int64_t c) {
    if (slide && c >= before) lrn_slide(acc, v + (c - before) * stride, len, -1.0);
  }
};

// y for image n, positions [s0, s0 + len); work holds 2 len doubles.
inline void lrn_forward_unit(const LrnShape& s, const LrnParams& p, const float* x, float* y,
                             int64_t n, int64_t s0, int64_t len, double* work) {
  double* acc = work;
  double* power = work + len;
  const int64_t C = s.channels, lo = p.size / 2, hi = (p.size - 1) / 2;
  const double coef = p.alpha / static_cast<double>(p.size);
  const float* xn = x + n * C * s.inner + s0;
  float* yn = y + n * C * s.inner + s0;
  LrnWindow<float> window{acc, xn, s.inner, len, C, lo, hi, lrn_all_finite(xn, s.inner, C, len)};
  window.start();
  for (int64_t c = 0; c < C; ++c) {
    window.enter(c);
    const float* xc = xn + c * s.inner;
    float* yc = yn + c * s.inner;
    lrn_powers(acc, len, p.k, coef, p.beta, power, nullptr);
    for (int64_t l = 0; l < len; ++l) yc[l] = static_cast<float>(xc[l] * power[l]);
    window.leave(c);
  }
}

// grad_input for image n, positions [s0, s0 + len); work holds (2 C + 2) len doubles.
inline void lrn_backward_unit(const LrnShape& s, const LrnParams& p, const float* dy,
                              const float* x, float* dx, int64_t n, int64_t s0, int64_t len,
                              double* work) {
  const int64_t C = s.channels, lo = p.size / 2, hi = (p.size - 1) / 2;
  const double coef = p.alpha / static_cast<double>(p.size);
  const double spread_coef = 2.0 * p.alpha * p.beta / static_cast<double>(p.size);
  const int64_t at = n * C * s.inner + s0;
  double* acc = work;
  double* power = work + len;            // scale^-beta, per channel
  double* inner = work + (C + 1) * len;  // dy x scale^(-beta - 1), per channel
  double* scale = work + (2 * C + 1) * len;
  LrnWindow<float> squares{acc, x + at, s.inner, len, C, lo, hi,
                           lrn_all_finite(x + at, s.inner, C, len)};
  squares.start();
  for (int64_t c = 0; c < C; ++c) {
    squares.enter(c);
    const float* xc = x + at + c * s.inner;
    const float* gc = dy + at + c * s.inner;
    double* pc = power + c * len;
    double* ic = inner + c * len;
    lrn_powers(acc, len, p.k, coef, p.beta, pc, scale);
    for (int64_t l = 0; l < len; ++l) ic[l] = static_cast<double>(gc[l]) * xc[l] * pc[l] / scale[l];
    squares.leave(c);
  }
  // Channel j is in the windows of channels [j - hi, j + lo]: the same slide, transposed.
  LrnWindow<double> spread{acc, inner, len, len, C, hi, lo, lrn_all_finite(inner, len, C, len)};
  spread.start();
  for (int64_t j = 0; j < C; ++j) {
    spread.enter(j);
    const float* xj = x + at + j * s.inner;
    const float* gj = dy + at + j * s.inner;
    float* dj = dx + at + j * s.inner;
    const double* pj = power + j * len;
    for (int64_t l = 0; l < len; ++l) {
      dj[l] = static_cast<float>(gj[l] * pj[l] - spread_coef * xj[l] * acc[l]);
    }
    spread.leave(j);
  }
}

}  // namespace
}  // namespace cnnkit
