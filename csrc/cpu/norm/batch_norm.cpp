// Production batch norm: threaded over channels; the statistics take one read
// pass. Each channel's sums are accumulated in double around a shift (the
// channel's first element), so the variance E[(x-K)^2] - E[x-K]^2 does not
// cancel catastrophically for large-mean data (1e7 +- 1): x - K is exact, its
// square exact in double, and K is within a few standard deviations of the mean.
// Four independent accumulators break the add latency chain.
#include <cmath>

#include "core/parallel.h"
#include "cpu/act/formulas.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {
namespace {

struct ChannelSums {
  double shift = 0.0;
  double count = 0.0;
  double sum = 0.0;          // sum of (x - shift)
  double squares = 0.0;      // sum of (x - shift)^2
  double dy = 0.0;           // sum of dy (backward only)
  double dy_shifted = 0.0;   // sum of dy * (x - shift) (backward only)

  double mean() const { return shift + sum / count; }
  // Biased variance; rounding can make it a hair negative when it is ~0.
  double var() const {
    const double m = sum / count;
    const double v = squares / count - m * m;
    return v > 0.0 ? v : 0.0;
  }
};

// With kWithGrad, the gradient sums take dy, or dy through the fused ReLU
// whose output is `mask` when that is not null.
template <bool kWithGrad>
ChannelSums channel_sums(const BatchNormShape& s, const float* x, const float* dy,
                         const float* mask, int64_t c) {
  ChannelSums r;
  r.count = static_cast<double>(s.batch * s.spatial);
  r.shift = x[c * s.spatial];
  double s1[4] = {0, 0, 0, 0}, s2[4] = {0, 0, 0, 0}, g1[4] = {0, 0, 0, 0}, g2[4] = {0, 0, 0, 0};
  for (int64_t n = 0; n < s.batch; ++n) {
    const int64_t base = (n * s.channels + c) * s.spatial;
    const float* row = x + base;
    const float* grow = kWithGrad ? dy + base : nullptr;
    const float* mrow = mask ? mask + base : nullptr;
    // Through the fused ReLU, as relu_backward: its output is > 0 where its input was.
    auto grad = [&](int64_t i) { return mrow ? act::relu_grad(grow[i], mrow[i]) : grow[i]; };
    int64_t i = 0;
    for (; i + 4 <= s.spatial; i += 4) {
      for (int k = 0; k < 4; ++k) {
        const double d = static_cast<double>(row[i + k]) - r.shift;
        s1[k] += d;
        s2[k] += d * d;
        if (kWithGrad) {
          const float g = grad(i + k);
          g1[k] += g;
          g2[k] += g * d;
        }
      }
    }
    for (; i < s.spatial; ++i) {
      const double d = static_cast<double>(row[i]) - r.shift;
      s1[0] += d;
      s2[0] += d * d;
      if (kWithGrad) {
        const float g = grad(i);
        g1[0] += g;
        g2[0] += g * d;
      }
    }
  }
  r.sum = (s1[0] + s1[1]) + (s1[2] + s1[3]);
  r.squares = (s2[0] + s2[1]) + (s2[2] + s2[3]);
  r.dy = (g1[0] + g1[1]) + (g1[2] + g1[3]);
  r.dy_shifted = (g2[0] + g2[1]) + (g2[2] + g2[3]);
  return r;
}

// out = (x - mean) * scale + bias, in double so a large mean costs no precision;
// with relu, 0 where that is < 0 (NaN kept, as relu).
void affine(const BatchNormShape& s, const float* x, int64_t c, double mean, double scale,
            double bias, bool relu, float* out) {
  for (int64_t n = 0; n < s.batch; ++n) {
    const int64_t base = (n * s.channels + c) * s.spatial;
    for (int64_t i = 0; i < s.spatial; ++i) {
      const float v = static_cast<float>((static_cast<double>(x[base + i]) - mean) * scale + bias);
      out[base + i] = relu ? act::relu(v) : v;
    }
  }
}

void training(const BatchNormShape& s, const float* x, const float* weight, const float* bias,
              float* running_mean, float* running_var, double momentum, double eps, float* out,
              bool relu) {
  parallel_for(s.channels, 3 * s.batch * s.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const ChannelSums r = channel_sums<false>(s, x, nullptr, nullptr, c);
      const double mean = r.mean(), var = r.var();
      const double scale = (weight ? weight[c] : 1.0) / std::sqrt(var + eps);
      affine(s, x, c, mean, scale, bias ? bias[c] : 0.0, relu, out);
      if (running_mean != nullptr) {
        running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                            momentum * var * r.count / (r.count - 1.0));
      }
    }
  });
}

void inference(const BatchNormShape& s, const float* x, const float* running_mean,
               const float* running_var, const float* weight, const float* bias, double eps,
               float* out, bool relu) {
  parallel_for(s.channels, s.batch * s.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const double scale =
          (weight ? weight[c] : 1.0) / std::sqrt(static_cast<double>(running_var[c]) + eps);
      affine(s, x, c, running_mean[c], scale, bias ? bias[c] : 0.0, relu, out);
    }
  });
}

// dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)), with
// sum(dy * (x - mean)) = sum(dy * (x - K)) - (mean - K) * sum(dy).
void backward_training(const BatchNormShape& s, const float* dy, const float* x,
                       const float* weight, double eps, float* dx, float* grad_weight,
                       float* grad_bias, const float* relu_output) {
  parallel_for(s.channels, 4 * s.batch * s.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const ChannelSums r = channel_sums<true>(s, x, dy, relu_output, c);
      const double mean = r.mean();
      const double invstd = 1.0 / std::sqrt(r.var() + eps);
      const double sum_dy_xhat = (r.dy_shifted - (mean - r.shift) * r.dy) * invstd;
      const double scale = (weight ? weight[c] : 1.0) * invstd;
      const double mean_dy = r.dy / r.count;
      const double xhat_coef = sum_dy_xhat / r.count * invstd;  // per unit of (x - mean)
      for (int64_t n = 0; n < s.batch; ++n) {
        const int64_t base = (n * s.channels + c) * s.spatial;
        for (int64_t i = 0; i < s.spatial; ++i) {
          const double centred = static_cast<double>(x[base + i]) - mean;
          const float g = relu_output ? act::relu_grad(dy[base + i], relu_output[base + i]) : dy[base + i];
          dx[base + i] = static_cast<float>(scale * (g - mean_dy - centred * xhat_coef));
        }
      }
      if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(sum_dy_xhat);
      if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(r.dy);
    }
  });
}

void backward_inference(const BatchNormShape& s, const float* dy, const float* x,
                        const float* running_mean, const float* running_var, const float* weight,
                        double eps, float* dx, float* grad_weight, float* grad_bias,
                        const float* relu_output) {
  parallel_for(s.channels, 2 * s.batch * s.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      const double scale = (weight ? weight[c] : 1.0) * invstd;
      const double mean = running_mean[c];
      double sum_dy = 0.0, sum_dy_centred = 0.0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const int64_t base = (n * s.channels + c) * s.spatial;
        for (int64_t i = 0; i < s.spatial; ++i) {
          const double g = relu_output ? act::relu_grad(dy[base + i], relu_output[base + i]) : dy[base + i];
          sum_dy += g;
          sum_dy_centred += g * (static_cast<double>(x[base + i]) - mean);
          dx[base + i] = static_cast<float>(g * scale);
        }
      }
      if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(sum_dy_centred * invstd);
      if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(sum_dy);
    }
  });
}

}  // namespace

const BatchNormKernels batch_norm_channels = {training, inference, backward_training,
                                              backward_inference};

}  // namespace cnnkit
