#include "cuda/common/launch.cuh"
#include "cuda/loss/loss.h"
#include "cuda/loss/rows.h"

namespace cnnkit::cuda {

namespace {

struct SoftmaxRows {
  using Acc = LogSumExp;
  const float* x;
  float* y;
  RowShape s;
  int64_t segments;
  bool logarithm;  // log_softmax
  CNNKIT_HD Acc partial(int64_t r, unsigned t, unsigned threads) const {
    return fold_row(x, row_base(s, r), s.inner, s.classes, t, threads);
  }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return combine_lse(a, b); }
  // A row of -inf only (max -inf, sum 0) gives NaN, as x - max does in PyTorch.
  CNNKIT_HD void finish(int64_t r, const Acc& total, unsigned t, unsigned threads) const {
    const int64_t base = row_base(s, r);
    const double log_sum = log(total.sum);
    for (int64_t c = t; c < s.classes; c += threads) {
      const int64_t i = base + c * s.inner;
      // In double: x - max rounded in float would cost |x - max| ulps in exp's result.
      const double shifted = static_cast<double>(x[i]) - total.max;
      y[i] = static_cast<float>(logarithm ? shifted - log_sum : exp(shifted) / total.sum);
    }
  }
};

struct SoftmaxGradRows {
  using Acc = double;
  const float* dy;
  const float* y;
  float* dx;
  RowShape s;
  int64_t segments;
  bool logarithm;  // log_softmax
  CNNKIT_HD Acc partial(int64_t r, unsigned t, unsigned threads) const {
    const int64_t base = row_base(s, r);
    double sum = 0.0;
    for (int64_t c = t; c < s.classes; c += threads) {
      const int64_t i = base + c * s.inner;
      sum += logarithm ? static_cast<double>(dy[i]) : static_cast<double>(dy[i]) * y[i];
    }
    return sum;
  }
  CNNKIT_HD static Acc combine(Acc a, Acc b) { return a + b; }
  CNNKIT_HD void finish(int64_t r, Acc total, unsigned t, unsigned threads) const {
    const int64_t base = row_base(s, r);
    for (int64_t c = t; c < s.classes; c += threads) {
      const int64_t i = base + c * s.inner;
      dx[i] = logarithm ? static_cast<float>(dy[i] - exp(static_cast<double>(y[i])) * total)
                  : static_cast<float>(y[i] * (dy[i] - total));
    }
  }
};

}  // namespace

void softmax_forward(const float* x, float* y, const RowShape& s, bool log, bool by_block, const Where& where) {
  if (s.classes == 0) return;
  reduce_segments(SoftmaxRows{x, y, s, s.rows(), log}, by_block, where, "softmax");
}

void softmax_backward(const float* dy, const float* y, float* dx, const RowShape& s, bool log, bool by_block,
                      const Where& where) {
  if (s.classes == 0) return;
  reduce_segments(SoftmaxGradRows{dy, y, dx, s, s.rows(), log}, by_block, where, "softmax_backward");
}

}  // namespace cnnkit::cuda
