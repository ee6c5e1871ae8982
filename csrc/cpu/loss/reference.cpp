// The definition of softmax and cross-entropy: one line at a time, on the
// calling thread, exps and sums in double.
#include <math.h>

#include "cnnkit/loss.h"
#include "cpu/loss/kernels.h"

namespace cnnkit {

namespace {

// Element a of the line (o, i).
int64_t at(const SoftmaxShape& s, int64_t o, int64_t a, int64_t i) {
  return (o * s.axis + a) * s.inner + i;
}

// NaN entries never win the comparison; they reach the output through the exps.
float row_max(const float* row, int64_t C) {
  float m = -INFINITY;
  for (int64_t j = 0; j < C; ++j) m = row[j] > m ? row[j] : m;
  return m;
}

double sum_exp(const float* row, int64_t C, float m) {
  double sum = 0.0;
  for (int64_t j = 0; j < C; ++j) sum += exp(static_cast<double>(row[j]) - m);
  return sum;
}

}  // namespace

void softmax_forward_reference(const SoftmaxShape& s, bool log_output, const float* x, float* y) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      float m = -INFINITY;
      for (int64_t a = 0; a < s.axis; ++a) m = x[at(s, o, a, i)] > m ? x[at(s, o, a, i)] : m;
      double sum = 0.0;
      for (int64_t a = 0; a < s.axis; ++a) sum += exp(static_cast<double>(x[at(s, o, a, i)]) - m);
      for (int64_t a = 0; a < s.axis; ++a) {
        const float v = x[at(s, o, a, i)];
        y[at(s, o, a, i)] = log_output
                                ? static_cast<float>(static_cast<double>(v) - m - log(sum))
                                : static_cast<float>(exp(static_cast<double>(v) - m) / sum);
      }
    }
  }
}

void softmax_backward_reference(const SoftmaxShape& s, bool log_output, const float* dy,
                                const float* y, float* dx) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      double sum = 0.0;
      for (int64_t a = 0; a < s.axis; ++a) {
        const int64_t k = at(s, o, a, i);
        sum += log_output ? static_cast<double>(dy[k])
                          : static_cast<double>(dy[k]) * static_cast<double>(y[k]);
      }
      for (int64_t a = 0; a < s.axis; ++a) {
        const int64_t k = at(s, o, a, i);
        dx[k] = log_output ? static_cast<float>(dy[k] - exp(static_cast<double>(y[k])) * sum)
                           : static_cast<float>(y[k] * (dy[k] - sum));
      }
    }
  }
}

void cross_entropy_forward_reference(const float* logits, const int64_t* target, int64_t N,
                                     int64_t C, int64_t ignore_index, Reduction reduction,
                                     float* out) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const float* row = logits + n * C;
    double loss = 0.0;
    if (target[n] != ignore_index) {
      // The maximum comes out of both terms, so neither is rounded at its scale.
      const float m = row_max(row, C);
      loss = log(sum_exp(row, C, m)) - (static_cast<double>(row[target[n]]) - m);
    }
    if (reduction == Reduction::None) out[n] = static_cast<float>(loss);
    total += loss;
  }
  if (reduction == Reduction::Sum) out[0] = static_cast<float>(total);
  if (reduction == Reduction::Mean) out[0] = static_cast<float>(total / static_cast<double>(count));
}

void cross_entropy_backward_reference(const float* logits, const int64_t* target, int64_t N,
                                      int64_t C, int64_t ignore_index, Reduction reduction,
                                      const float* grad_output, float* grad_input) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  for (int64_t n = 0; n < N; ++n) {
    const float* row = logits + n * C;
    float* grad = grad_input + n * C;
    if (target[n] == ignore_index) {
      for (int64_t j = 0; j < C; ++j) grad[j] = 0.0f;
      continue;
    }
    double scale = reduction == Reduction::None ? grad_output[n] : grad_output[0];
    if (reduction == Reduction::Mean) scale /= static_cast<double>(count);
    const float m = row_max(row, C);
    const double sum = sum_exp(row, C, m);
    for (int64_t j = 0; j < C; ++j) {
      const double p = exp(static_cast<double>(row[j]) - m) / sum;
      grad[j] = static_cast<float>(scale * (p - (j == target[n] ? 1.0 : 0.0)));
    }
  }
}

}  // namespace cnnkit
