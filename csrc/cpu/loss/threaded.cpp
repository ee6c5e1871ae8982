// Softmax and cross-entropy, threaded over independent lines. A softmax work
// item is a block of up to kColumns adjacent lines (one line when the axis
// is the last dim), walked along the axis so that when inner > 1 every load
// is contiguous and the max/sum updates vectorise across the block. Sums are kept in double: the
// exps are all positive, and double makes the result independent of how
// long the axis is.
#include <math.h>

#include <vector>

#include "core/parallel.h"
#include "cpu/loss/kernels.h"

namespace cnnkit {

namespace {

constexpr int64_t kColumns = 64;
// Rough cost of one element in parallel_for's units (an exp and a few flops).
constexpr int64_t kElementCost = 16;

// The lines of one work item: `width` lines starting at x + base, `inner` apart along the axis.
struct Block {
  int64_t base;
  int64_t width;
};

template <class Fn>
void for_each_block(const SoftmaxShape& s, Fn fn) {
  // An empty axis would leave outer * inner unbounded by the element count.
  if (s.outer == 0 || s.axis == 0 || s.inner == 0) return;
  const int64_t chunks = (s.inner + kColumns - 1) / kColumns;
  parallel_for(s.outer * chunks, s.axis * kColumns * kElementCost, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t o = u / chunks;
      const int64_t j0 = (u % chunks) * kColumns;
      const int64_t width = s.inner - j0 < kColumns ? s.inner - j0 : kColumns;
      fn(Block{o * s.axis * s.inner + j0, width});
    }
  });
}

void softmax_forward_block(const SoftmaxShape& s, bool log_output, const float* x, float* y,
                           Block b) {
  float m[kColumns];
  double sum[kColumns];
  for (int64_t j = 0; j < b.width; ++j) {
    m[j] = -INFINITY;
    sum[j] = 0.0;
  }
  for (int64_t a = 0; a < s.axis; ++a) {
    const float* xr = x + b.base + a * s.inner;
    for (int64_t j = 0; j < b.width; ++j) m[j] = xr[j] > m[j] ? xr[j] : m[j];
  }
  // softmax keeps exp(x - m) in y and scales it afterwards; log_softmax only needs the sum.
  for (int64_t a = 0; a < s.axis; ++a) {
    const float* xr = x + b.base + a * s.inner;
    float* yr = y + b.base + a * s.inner;
    for (int64_t j = 0; j < b.width; ++j) {
      const double e = exp(static_cast<double>(xr[j]) - m[j]);
      if (!log_output) yr[j] = static_cast<float>(e);
      sum[j] += e;
    }
  }
  // log_softmax subtracts m and log(sum) one after the other: m + log(sum)
  // would drop log(sum) when |m| is large (3e38 + 0.7 == 3e38 in double too).
  double log_sum_or_scale[kColumns];
  for (int64_t j = 0; j < b.width; ++j) {
    log_sum_or_scale[j] = log_output ? log(sum[j]) : 1.0 / sum[j];
  }
  for (int64_t a = 0; a < s.axis; ++a) {
    const float* xr = x + b.base + a * s.inner;
    float* yr = y + b.base + a * s.inner;
    for (int64_t j = 0; j < b.width; ++j) {
      yr[j] = static_cast<float>(log_output
                                     ? (static_cast<double>(xr[j]) - m[j]) - log_sum_or_scale[j]
                                     : yr[j] * log_sum_or_scale[j]);
    }
  }
}

// Both backward formulas need one sum along the axis: of dy*y (softmax) or of dy (log_softmax).
void softmax_backward_block(const SoftmaxShape& s, bool log_output, const float* dy,
                            const float* y, float* dx, Block b) {
  double sum[kColumns];
  for (int64_t j = 0; j < b.width; ++j) sum[j] = 0.0;
  for (int64_t a = 0; a < s.axis; ++a) {
    const int64_t k = b.base + a * s.inner;
    for (int64_t j = 0; j < b.width; ++j) {
      sum[j] += log_output ? static_cast<double>(dy[k + j])
                           : static_cast<double>(dy[k + j]) * static_cast<double>(y[k + j]);
    }
  }
  for (int64_t a = 0; a < s.axis; ++a) {
    const int64_t k = b.base + a * s.inner;
    for (int64_t j = 0; j < b.width; ++j) {
      const double yj = y[k + j];
      dx[k + j] = static_cast<float>(log_output ? dy[k + j] - exp(yj) * sum[j]
                                                : yj * (dy[k + j] - sum[j]));
    }
  }
}

// sum of exp(row - m) over C entries, m being the row maximum (returned too).
double sum_exp(const float* row, int64_t C, float& m) {
  m = -INFINITY;
  for (int64_t j = 0; j < C; ++j) m = row[j] > m ? row[j] : m;
  double sum = 0.0;
  for (int64_t j = 0; j < C; ++j) sum += exp(static_cast<double>(row[j]) - m);
  return sum;
}

}  // namespace

void softmax_forward_threaded(const SoftmaxShape& s, bool log_output, const float* x, float* y) {
  for_each_block(s, [&](Block b) { softmax_forward_block(s, log_output, x, y, b); });
}

void softmax_backward_threaded(const SoftmaxShape& s, bool log_output, const float* dy,
                               const float* y, float* dx) {
  for_each_block(s, [&](Block b) { softmax_backward_block(s, log_output, dy, y, dx, b); });
}

void cross_entropy_forward_threaded(const float* logits, const int64_t* target, int64_t N,
                                    int64_t C, int64_t ignore_index, Reduction reduction,
                                    float* out) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  // Per-row losses in double, added in row order afterwards: the reduced loss
  // does not depend on the thread count.
  std::vector<double> losses(reduction == Reduction::None ? 0 : static_cast<size_t>(N));
  parallel_for(N, C * kElementCost, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* row = logits + n * C;
      double loss = 0.0;
      if (target[n] != ignore_index) {
        float m;
        const double sum = sum_exp(row, C, m);
        loss = log(sum) - (static_cast<double>(row[target[n]]) - m);
      }
      if (reduction == Reduction::None) {
        out[n] = static_cast<float>(loss);
      } else {
        losses[static_cast<size_t>(n)] = loss;
      }
    }
  });
  if (reduction == Reduction::None) return;
  double total = 0.0;
  for (double loss : losses) total += loss;
  out[0] = static_cast<float>(reduction == Reduction::Mean ? total / static_cast<double>(count)
                                                           : total);
}

void cross_entropy_backward_threaded(const float* logits, const int64_t* target, int64_t N,
                                     int64_t C, int64_t ignore_index, Reduction reduction,
                                     const float* grad_output, float* grad_input) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  parallel_for(N, C * kElementCost, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* row = logits + n * C;
      float* grad = grad_input + n * C;
      const int64_t t = target[n];
      if (t == ignore_index) {
        for (int64_t j = 0; j < C; ++j) grad[j] = 0.0f;
        continue;
      }
      double scale = reduction == Reduction::None ? grad_output[n] : grad_output[0];
      if (reduction == Reduction::Mean) scale /= static_cast<double>(count);
      float m;
      const double inv_sum = 1.0 / sum_exp(row, C, m);
      for (int64_t j = 0; j < C; ++j) {
        const double p = exp(static_cast<double>(row[j]) - m) * inv_sum;
        grad[j] = static_cast<float>(scale * (j == t ? p - 1.0 : p));
      }
    }
  });
}

}  // namespace cnnkit
