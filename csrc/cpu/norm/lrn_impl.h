// Local response normalisation on one unit (an image's channels at a block of
// positions), as plain loops over the block that the *_avx2.cpp / *_avx512.cpp
// builds vectorise. The channel window's sum of squares (forward, and the
// backward's first pass) slides where that is safe (see lrn_slides_safely):
// each channel enters once and leaves once, in double, so a window costs O(1)
// instead of O(size).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cnnkit/norm.h"

namespace cnnkit {
namespace {

// Positions per unit: a few KB of double accumulators, in L1.
constexpr int64_t kLrnBlock = 256;

// power[l] = scale[l]^-beta (in place allowed), one loop per case so each
// vectorises: the exponents of common models as square roots and divisions
// (each rounding once, much cheaper than pow), pow otherwise.
template <class T>
void lrn_power_of_scale(const T* scale, int64_t len, double beta, T* power) {
  if (beta == 0.75) {
    for (int64_t l = 0; l < len; ++l) {
      const T r = std::sqrt(scale[l]);
      power[l] = T(1) / (r * std::sqrt(r));
    }
  } else if (beta == 0.5) {
    for (int64_t l = 0; l < len; ++l) power[l] = T(1) / std::sqrt(scale[l]);
  } else if (beta == 1.0) {
    for (int64_t l = 0; l < len; ++l) power[l] = T(1) / scale[l];
  } else {
    for (int64_t l = 0; l < len; ++l) power[l] = static_cast<T>(std::pow(static_cast<double>(scale[l]), -beta));
  }
}

// power[l] = scale^-beta with scale = k + coef * acc[l], in double. `scale`
// (may be null) receives the scales.
inline void lrn_powers(const double* acc, int64_t len, double k, double coef, double beta,
                       double* power, double* scale) {
  for (int64_t l = 0; l < len; ++l) power[l] = k + coef * acc[l];
  if (scale) std::copy(power, power + len, scale);
  lrn_power_of_scale(power, len, beta, power);
}

// The same in float, for the exponents of common models (0.75, 0.5, 1), when
// every scale of the block is a normal float: float square roots and
// divisions take a quarter of the double ones' time, and each step rounds
// once, a few u in all, well within the tolerance rule's sqrt(size) * 8u.
// False (nothing usable written) for other exponents, and where a scale
// leaves float's normal range (inputs beyond ~1e19, or k = 0 with near-zero
// inputs): those blocks take lrn_powers in double.
inline bool lrn_powers_float(const double* acc, int64_t len, double k, double coef, double beta,
                             float* power, float* scale) {
  if (beta != 0.75 && beta != 0.5 && beta != 1.0) return false;
  bool normal = true;
  for (int64_t l = 0; l < len; ++l) {
    const double v = k + coef * acc[l];
    normal &= v >= static_cast<double>(std::numeric_limits<float>::min()) &&
              v <= static_cast<double>(std::numeric_limits<float>::max());
    scale[l] = static_cast<float>(v);
  }
  if (!normal) return false;
  lrn_power_of_scale(scale, len, beta, power);
  return true;
}

// acc[l] += sign * v[l]^2 for the inputs, sign * v[l] for the backward's terms; l < len.
inline void lrn_slide(double* acc, const float* v, int64_t len, double sign) {
  for (int64_t l = 0; l < len; ++l) acc[l] += sign * (static_cast<double>(v[l]) * v[l]);
}
inline void lrn_slide(double* acc, const double* v, int64_t len, double sign) {
  for (int64_t l = 0; l < len; ++l) acc[l] += sign * v[l];
}
// One step of the window: `in` enters and `out` leaves in one pass over acc
// (two passes doubled the stores, the forward's largest cost).
inline void lrn_slide(double* acc, const float* in, const float* out, int64_t len) {
  for (int64_t l = 0; l < len; ++l) {
    acc[l] += static_cast<double>(in[l]) * in[l] - static_cast<double>(out[l]) * out[l];
  }
}

// Whether the sliding sum of squares of these inputs stays accurate. A slide
// adds and subtracts the squares, so each window carries rounding errors of
// the largest square that passed through it (up to 2^-53 of it per step);
// they must stay far below float's resolution of the scale k + coef * sum,
// whose floor is k: within 2^-32 k over all `rows` steps. Beyond that (huge
// inputs, k = 0) and with NaN or infinities (inf - inf would spoil every
// later window), each window is summed anew. The largest |x| is found from
// the bits: without the sign they order as the values do, NaN and infinities
// above every finite value, and an integer max reduction vectorises (a float
// one, or std::isfinite, ran one scalar compare per value).
inline bool lrn_slides_safely(const float* v, int64_t stride, int64_t rows, int64_t len, int64_t size,
                              double k, double coef) {
  uint32_t largest_bits = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = v + r * stride;
    for (int64_t l = 0; l < len; ++l) {
      uint32_t b;
      std::memcpy(&b, row + l, sizeof b);
      b &= 0x7fffffffu;
      largest_bits = b > largest_bits ? b : largest_bits;
    }
  }
  if (largest_bits >= 0x7f800000u || !(k > 0.0)) return false;
  float largest;
  std::memcpy(&largest, &largest_bits, sizeof largest);
  const double square = static_cast<double>(largest) * largest;
  return coef * square * static_cast<double>(rows * size) * 0x1p-53 <= 0x1p-32 * k;
}

// acc = the sum of rows [c - before, c + after] (within [0, channels)) of v.
template <class T>
void lrn_window_sum(double* acc, const T* v, int64_t stride, int64_t len, int64_t channels, int64_t c,
                    int64_t before, int64_t after) {
  std::fill(acc, acc + len, 0.0);
  for (int64_t d = std::max<int64_t>(0, c - before); d <= std::min(channels - 1, c + after); ++d) {
    lrn_slide(acc, v + d * stride, len, 1.0);
  }
}

// acc = the window sum of squares [c - before, c + after] of rows of x, for
// c = 0, 1, ... in turn: slid where `slide` (lrn_slides_safely), else summed
// anew for each c, so that a NaN or inf spoils only the windows holding it and
// no window carries the rounding of a far larger one.
struct LrnWindow {
  double* acc;
  const float* x;
  int64_t stride, len, channels, before, after;
  bool slide;

  void start() {
    std::fill(acc, acc + len, 0.0);
    if (!slide) return;
    for (int64_t c = 0; c < std::min(after, channels); ++c) lrn_slide(acc, x + c * stride, len, 1.0);
  }
  // The window of c, from that of c - 1 (or start()): c + after enters,
  // c - 1 - before leaves.
  void enter(int64_t c) {
    if (!slide) {
      lrn_window_sum(acc, x, stride, len, channels, c, before, after);
      return;
    }
    const bool in = c + after < channels, out = c > before;
    if (in && out) {
      lrn_slide(acc, x + (c + after) * stride, x + (c - 1 - before) * stride, len);
    } else if (in) {
      lrn_slide(acc, x + (c + after) * stride, len, 1.0);
    } else if (out) {
      lrn_slide(acc, x + (c - 1 - before) * stride, len, -1.0);
    }
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
  alignas(64) float power_f[kLrnBlock], scale_f[kLrnBlock];
  LrnWindow window{acc, xn, s.inner, len, C, lo, hi, lrn_slides_safely(xn, s.inner, C, len, p.size, p.k, coef)};
  window.start();
  for (int64_t c = 0; c < C; ++c) {
    window.enter(c);
    const float* xc = xn + c * s.inner;
    float* yc = yn + c * s.inner;
    if (lrn_powers_float(acc, len, p.k, coef, p.beta, power_f, scale_f)) {
      for (int64_t l = 0; l < len; ++l) yc[l] = xc[l] * power_f[l];
    } else {
      lrn_powers(acc, len, p.k, coef, p.beta, power, nullptr);
      for (int64_t l = 0; l < len; ++l) yc[l] = static_cast<float>(xc[l] * power[l]);
    }
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
  alignas(64) float power_f[kLrnBlock], scale_f[kLrnBlock];
  LrnWindow squares{acc, x + at, s.inner, len, C, lo, hi,
                    lrn_slides_safely(x + at, s.inner, C, len, p.size, p.k, coef)};
  squares.start();
  for (int64_t c = 0; c < C; ++c) {
    squares.enter(c);
    const float* xc = x + at + c * s.inner;
    const float* gc = dy + at + c * s.inner;
    double* pc = power + c * len;
    double* ic = inner + c * len;
    if (lrn_powers_float(acc, len, p.k, coef, p.beta, power_f, scale_f)) {
      for (int64_t l = 0; l < len; ++l) {
        pc[l] = power_f[l];
        ic[l] = gc[l] * xc[l] * power_f[l] / scale_f[l];
      }
    } else {
      lrn_powers(acc, len, p.k, coef, p.beta, pc, scale);
      for (int64_t l = 0; l < len; ++l) ic[l] = static_cast<double>(gc[l]) * xc[l] * pc[l] / scale[l];
    }
  }
  // Channel j is in the windows of channels [j - hi, j + lo]: the same windows, transposed,
  // summed anew: these terms have signs and no floor like k below their sums, so no slide
  // of them could bound its rounding against the sums it serves.
  for (int64_t j = 0; j < C; ++j) {
    lrn_window_sum(acc, inner, len, len, C, j, hi, lo);
    const float* xj = x + at + j * s.inner;
    const float* gj = dy + at + j * s.inner;
    float* dj = dx + at + j * s.inner;
    const double* pj = power + j * len;
    for (int64_t l = 0; l < len; ++l) {
      dj[l] = static_cast<float>(gj[l] * pj[l] - spread_coef * xj[l] * acc[l]);
    }
  }
}

}  // namespace
}  // namespace cnnkit
