// The per-row pieces softmax and cross-entropy share: where a row's elements are, and a
// log-sum-exp accumulator that folds a row in any split and combines the parts in a fixed order.
#pragma once
#include <math.h>

#include <cstdint>

#include "cuda/common/hd.h"
#include "cuda/loss/loss.h"

namespace cnnkit::cuda {

CNNKIT_HD int64_t row_base(const RowShape& s, int64_t r) { return (r / s.inner) * s.classes * s.inner + r % s.inner; }

// max of a part of a row and the sum of exp(x - max) over it. A NaN becomes the max and stays
// (x > NaN is false); a part with nothing above -inf has sum 0 and drops out of combine.
struct LogSumExp {
  float max = -INFINITY;
  double sum = 0.0;
};

CNNKIT_HD float nan_max(float m, float x) { return (x > m || x != x) ? x : m; }

// Two passes over the thread's share (t, t + threads, ...): its max, then its sum.
CNNKIT_HD LogSumExp fold_row(const float* x, int64_t base, int64_t stride, int64_t n, unsigned t, unsigned threads) {
  LogSumExp a;
  for (int64_t c = t; c < n; c += threads) a.max = nan_max(a.max, x[base + c * stride]);
  if (a.max == -INFINITY) return a;
  for (int64_t c = t; c < n; c += threads) a.sum += expf(x[base + c * stride] - a.max);
  return a;
}

CNNKIT_HD LogSumExp combine_lse(const LogSumExp& a, const LogSumExp& b) {
  if (a.max == -INFINITY) return b;
  if (b.max == -INFINITY) return a;
  LogSumExp r;
  r.max = nan_max(a.max, b.max);
  r.sum = a.sum * exp(static_cast<double>(a.max) - r.max) + b.sum * exp(static_cast<double>(b.max) - r.max);
  return r;
}

}  // namespace cnnkit::cuda
