// The definition of batch normalisation: per channel, the mean, then the mean
// squared deviation from it (two passes, double precision), serial.
#include <cmath>

#include "cnnkit/norm.h"
#include "cpu/act/formulas.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {
namespace {

// x[n, c, i] for n in [0, N), i in [0, S): the elements of channel c.
template <class Fn>
void for_channel(const BatchNormShape& s, int64_t c, Fn&& fn) {
  for (int64_t n = 0; n < s.batch; ++n) {
    const int64_t base = (n * s.channels + c) * s.spatial;
    for (int64_t i = 0; i < s.spatial; ++i) fn(base + i);
  }
}

void channel_stats(const BatchNormShape& s, const float* x, int64_t c, double& mean,
                   double& var) {
  const double count = static_cast<double>(s.batch * s.spatial);
  double sum = 0.0;
  for_channel(s, c, [&](int64_t i) { sum += x[i]; });
  mean = sum / count;
  double squares = 0.0;
  for_channel(s, c, [&](int64_t i) { squares += (x[i] - mean) * (x[i] - mean); });
  var = squares / count;
}

double weight_of(const float* weight, int64_t c) { return weight ? weight[c] : 1.0; }

// The fused ReLU, applied to an output and taken back through in a gradient
// (its output is > 0 where its input was).
float relu_of(float v, bool relu) { return relu ? act::relu(v) : v; }
double grad_through(const float* dy, const float* relu_output, int64_t i) {
  return relu_output ? act::relu_grad(dy[i], relu_output[i]) : dy[i];
}
double bias_of(const float* bias, int64_t c) { return bias ? bias[c] : 0.0; }

void training(const BatchNormShape& s, const float* x, const float* weight, const float* bias,
              float* running_mean, float* running_var, double momentum, double eps, float* out,
              bool relu) {
  const double count = static_cast<double>(s.batch * s.spatial);
  for (int64_t c = 0; c < s.channels; ++c) {
    double mean, var;
    channel_stats(s, x, c, mean, var);
    const double invstd = 1.0 / std::sqrt(var + eps);
    for_channel(s, c, [&](int64_t i) {
      out[i] = relu_of(static_cast<float>((x[i] - mean) * invstd * weight_of(weight, c) + bias_of(bias, c)), relu);
    });
    if (running_mean != nullptr) {
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                          momentum * var * count / (count - 1.0));
    }
  }
}

void inference(const BatchNormShape& s, const float* x, const float* running_mean,
               const float* running_var, const float* weight, const float* bias, double eps,
               float* out, bool relu) {
  for (int64_t c = 0; c < s.channels; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    for_channel(s, c, [&](int64_t i) {
      out[i] = relu_of(static_cast<float>((x[i] - static_cast<double>(running_mean[c])) * invstd *
                                              weight_of(weight, c) +
                                          bias_of(bias, c)),
                       relu);
    });
  }
}

// dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
void backward_training(const BatchNormShape& s, const float* dy, const float* x,
                       const float* weight, double eps, float* dx, float* grad_weight,
                       float* grad_bias, const float* relu_output) {
  const double count = static_cast<double>(s.batch * s.spatial);
  for (int64_t c = 0; c < s.channels; ++c) {
    double mean, var;
    channel_stats(s, x, c, mean, var);
    const double invstd = 1.0 / std::sqrt(var + eps);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for_channel(s, c, [&](int64_t i) {
      sum_dy += grad_through(dy, relu_output, i);
      sum_dy_xhat += grad_through(dy, relu_output, i) * (x[i] - mean) * invstd;
    });
    const double w = weight_of(weight, c);
    for_channel(s, c, [&](int64_t i) {
      const double xhat = (x[i] - mean) * invstd;
      dx[i] = static_cast<float>(w * invstd *
                                 (grad_through(dy, relu_output, i) - sum_dy / count - xhat * sum_dy_xhat / count));
    });
    if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(sum_dy_xhat);
    if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(sum_dy);
  }
}

void backward_inference(const BatchNormShape& s, const float* dy, const float* x,
                        const float* running_mean, const float* running_var, const float* weight,
                        double eps, float* dx, float* grad_weight, float* grad_bias,
                        const float* relu_output) {
  for (int64_t c = 0; c < s.channels; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    const double w = weight_of(weight, c);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for_channel(s, c, [&](int64_t i) {
      const double g = grad_through(dy, relu_output, i);
      sum_dy += g;
      sum_dy_xhat += g * (x[i] - static_cast<double>(running_mean[c])) * invstd;
      dx[i] = static_cast<float>(g * w * invstd);
    });
    if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(sum_dy_xhat);
    if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(sum_dy);
  }
}

}  // namespace

const BatchNormKernels batch_norm_reference = {training, inference, backward_training,
                                               backward_inference};

}  // namespace cnnkit
