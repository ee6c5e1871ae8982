#include <math.h>

#include "cuda/common/launch.cuh"
#include "cuda/norm/norm.h"

namespace cnnkit::cuda {

namespace {

// Element k in [0, batch * spatial) of channel c.
CNNKIT_HD int64_t element(const NormShape& s, int64_t c, int64_t k) {
  return ((k / s.spatial) * s.channels + c) * s.spatial + k % s.spatial;
}

CNNKIT_HD int64_t count(const NormShape& s) { return s.batch * s.spatial; }

// Sums of d and d^2 with d = x - shift.
struct Moments {
  double sum = 0.0, squares = 0.0;
};

CNNKIT_HD Moments fold_moments(const NormShape& s, const float* x, int64_t c, unsigned t, unsigned threads) {
  Moments m;
  const double shift = x[element(s, c, 0)];
  for (int64_t k = t; k < count(s); k += threads) {
    const double d = x[element(s, c, k)] - shift;
    m.sum += d;
    m.squares += d * d;
  }
  return m;
}

CNNKIT_HD Moments add(const Moments& a, const Moments& b) { return Moments{a.sum + b.sum, a.squares + b.squares}; }

// mean and biased variance from the shifted moments.
CNNKIT_HD void mean_var(const NormShape& s, const float* x, int64_t c, const Moments& m, double& mean, double& var) {
  const double n = static_cast<double>(count(s));
  const double shifted_mean = m.sum / n;
  mean = x[element(s, c, 0)] + shifted_mean;
  var = m.squares / n - shifted_mean * shifted_mean;
  if (var < 0.0) var = 0.0;  // rounding of a (near-)constant channel
}

CNNKIT_HD double weight_of(const float* w, int64_t c) { return w ? w[c] : 1.0; }
CNNKIT_HD double bias_of(const float* b, int64_t c) { return b ? b[c] : 0.0; }

struct TrainForward {
  using Acc = Moments;
  NormShape s;
  const float* x;
  float* running_mean;
  float* running_var;
  const float* weight;
  const float* bias;
  double momentum, eps;
  float* y;
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t c, unsigned t, unsigned threads) const { return fold_moments(s, x, c, t, threads); }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return add(a, b); }
  CNNKIT_HD void finish(int64_t c, const Acc& total, unsigned t, unsigned threads) const {
    double mean, var;
    mean_var(s, x, c, total, mean, var);
    const double invstd = 1.0 / sqrt(var + eps);
    const double w = weight_of(weight, c), b = bias_of(bias, c);
    for (int64_t k = t; k < count(s); k += threads) {
      const int64_t i = element(s, c, k);
      y[i] = static_cast<float>((x[i] - mean) * invstd * w + b);
    }
    if (t == 0 && running_mean) {
      const double n = static_cast<double>(count(s));
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var * n / (n - 1.0));
    }
  }
};

struct EvalForward {
  NormShape s;
  const float* x;
  const float* running_mean;
  const float* running_var;
  const float* weight;
  const float* bias;
  double eps;
  float* y;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t c = (i / s.spatial) % s.channels;
    const double invstd = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
    y[i] = static_cast<float>((x[i] - static_cast<double>(running_mean[c])) * invstd * weight_of(weight, c) +
                              bias_of(bias, c));
  }
};

// The batch mean and 1/sqrt(var + eps) per channel into stats[c], stats[channels + c].
struct BatchStats {
  using Acc = Moments;
  NormShape s;
  const float* x;
  double eps;
  double* stats;
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t c, unsigned t, unsigned threads) const { return fold_moments(s, x, c, t, threads); }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return add(a, b); }
  CNNKIT_HD void finish(int64_t c, const Acc& total, unsigned t, unsigned) const {
    if (t != 0) return;
    double mean, var;
    mean_var(s, x, c, total, mean, var);
    stats[c] = mean;
    stats[s.channels + c] = 1.0 / sqrt(var + eps);
  }
};

// Per channel: sum dy and sum dy * x_hat; then dx (training: through the batch statistics too;
// eval: w * invstd * dy) and the parameter gradients. mean/invstd come from BatchStats (training)
// or the running statistics (eval).
struct Grad {
  struct Acc {
    double dy = 0.0, dy_xhat = 0.0;
  };
  NormShape s;
  const float* dy;
  const float* x;
  const double* stats;  // training
  const float* running_mean;  // eval
  const float* running_var;
  const float* weight;
  bool training;
  double eps;
  float* dx;
  float* grad_weight;
  float* grad_bias;
  int64_t segments;
  CNNKIT_HD void mean_invstd(int64_t c, double& mean, double& invstd) const {
    if (training) {
      mean = stats[c];
      invstd = stats[s.channels + c];
    } else {
      mean = running_mean[c];
      invstd = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
    }
  }
  CNNKIT_HD Acc partial(int64_t c, unsigned t, unsigned threads) const {
    double mean, invstd;
    mean_invstd(c, mean, invstd);
    Acc a;
    for (int64_t k = t; k < count(s); k += threads) {
      const int64_t i = element(s, c, k);
      a.dy += dy[i];
      a.dy_xhat += dy[i] * (x[i] - mean) * invstd;
    }
    return a;
  }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return Acc{a.dy + b.dy, a.dy_xhat + b.dy_xhat}; }
  CNNKIT_HD void finish(int64_t c, const Acc& total, unsigned t, unsigned threads) const {
    double mean, invstd;
    mean_invstd(c, mean, invstd);
    const double n = static_cast<double>(count(s));
    const double scale = weight_of(weight, c) * invstd;
    for (int64_t k = t; k < count(s); k += threads) {
      const int64_t i = element(s, c, k);
      if (training) {
        const double xhat = (x[i] - mean) * invstd;
        dx[i] = static_cast<float>(scale * (dy[i] - total.dy / n - xhat * total.dy_xhat / n));
      } else {
        dx[i] = static_cast<float>(dy[i] * scale);
      }
    }
    if (t != 0) return;
    if (grad_weight) grad_weight[c] = static_cast<float>(total.dy_xhat);
    if (grad_bias) grad_bias[c] = static_cast<float>(total.dy);
  }
};

}  // namespace

void batch_norm_forward(const NormShape& s, const float* x, float* running_mean, float* running_var,
                        const float* weight, const float* bias, bool training, double momentum, double eps, float* y,
                        bool by_block, const Where& where) {
  if (count(s) == 0) return;
  if (training) {
    reduce_segments(TrainForward{s, x, running_mean, running_var, weight, bias, momentum, eps, y, s.channels},
                    by_block, where, "batch_norm");
  } else {
    for_each(EvalForward{s, x, running_mean, running_var, weight, bias, eps, y}, count(s) * s.channels, where,
             "batch_norm");
  }
}

void batch_norm_backward(const NormShape& s, const float* dy, const float* x, const float* running_mean,
                         const float* running_var, const float* weight, bool training, double eps, float* dx,
                         float* grad_weight, float* grad_bias, double* scratch, bool by_block, const Where& where) {
  // An empty batch still writes the parameter gradients: sums over nothing, zeros.
  if (training && count(s) > 0) {
    reduce_segments(BatchStats{s, x, eps, scratch, s.channels}, by_block, where, "batch_norm_backward");
  }
  reduce_segments(Grad{s, dy, x, scratch, running_mean, running_var, weight, training, eps, dx, grad_weight, grad_bias,
                       s.channels},
                  by_block, where, "batch_norm_backward");
}

}  // namespace cnnkit::cuda
