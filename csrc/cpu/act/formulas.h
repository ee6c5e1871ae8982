// The scalar definition of each activation and its derivative, shared by the
// reference, the threaded loops and the CUDA kernels (CNNKIT_HD), so all compute the same values.
// Conventions follow PyTorch: the comparison that picks a branch decides
// where the gradient at a kink goes and what NaN does (a NaN input takes the
// branch whose test is false). Where PyTorch's own scalar and vectorised
// paths disagree on NaN (elu, relu6 gradients), the vectorised one is
// followed: elu's gradient is NaN, relu6's is 0 (it passes only for 0 < x < 6).
#pragma once
#include <math.h>

#include "cuda/common/hd.h"

namespace cnnkit {
namespace act {

CNNKIT_HD float relu(float x) { return x < 0.0f ? 0.0f : x; }
CNNKIT_HD float relu_grad(float dy, float x) { return x <= 0.0f ? 0.0f : dy; }

CNNKIT_HD float leaky_relu(float x, float slope) { return x > 0.0f ? x : x * slope; }
CNNKIT_HD float leaky_relu_grad(float dy, float x, float slope) { return x > 0.0f ? dy : dy * slope; }

// expm1 keeps alpha*(e^x - 1) accurate for x near 0.
CNNKIT_HD float elu(float x, float alpha) { return x <= 0.0f ? alpha * expm1f(x) : x; }
CNNKIT_HD float elu_grad(float dy, float x, float alpha) {
  return x > 0.0f ? dy : static_cast<float>(dy * (static_cast<double>(alpha) * expf(x)));
}

CNNKIT_HD float relu6(float x) { return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x); }
CNNKIT_HD float relu6_grad(float dy, float x) { return (x > 0.0f && x < 6.0f) ? dy : 0.0f; }

// e = exp(-|x|) never overflows; both branches divide by 1 + e in [1, 2].
CNNKIT_HD float sigmoid(float x) {
  const float e = expf(-fabsf(x));
  return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
// s(1-s) = e/(1+e)^2: no cancellation where s rounds to 1. The few flops
// after the exp run in double (free next to the libm call) so the result is
// rounded once, not five times.
CNNKIT_HD float sigmoid_grad(float dy, float x) {
  const double e = expf(-fabsf(x));
  const double d = 1.0 + e;
  return static_cast<float>(dy * (e / (d * d)));
}

CNNKIT_HD float tanh(float x) { return tanhf(x); }
// 1 - tanh^2 = 4e/(1+e)^2 with e = exp(-2|x|): no cancellation where tanh rounds to +-1.
CNNKIT_HD float tanh_grad(float dy, float x) {
  const double e = expf(-2.0f * fabsf(x));
  const double d = 1.0 + e;
  return static_cast<float>(dy * (4.0 * e / (d * d)));
}

// log(1 + e^t) = max(t, 0) + log1p(e^-|t|) never overflows, whatever the threshold.
// `t > 0 ? t : 0` rather than fmaxf so that NaN reaches the log term and propagates.
CNNKIT_HD float softplus(float x, float beta, float threshold) {
  const float t = beta * x;
  if (t > threshold) return x;
  return ((t > 0.0f ? t : 0.0f) + log1pf(expf(-fabsf(t)))) / beta;
}
CNNKIT_HD float softplus_grad(float dy, float x, float beta, float threshold) {
  const float t = beta * x;
  return t > threshold ? dy : dy * sigmoid(t);
}

// NaN fails both tests and passes through, as np.clip and PyTorch do.
CNNKIT_HD float hardtanh(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
CNNKIT_HD float hardtanh_grad(float dy, float x, float lo, float hi) {
  return (x > lo && x < hi) ? dy : 0.0f;
}

// GELU, SiLU: the few flops around the libm call run in double and round once.
constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluTanhC = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;

// Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation where Phi is tiny.
CNNKIT_HD double normal_cdf(double x) { return 0.5 * erfc(-x * kSqrtHalf); }
CNNKIT_HD float gelu(float x) { return static_cast<float>(x * normal_cdf(x)); }
CNNKIT_HD float gelu_grad(float dy, float x) {
  const double v = x;
  return static_cast<float>(dy * (normal_cdf(v) + v * kInvSqrt2Pi * exp(-0.5 * v * v)));
}

// sigmoid(t) and sigmoid(t) sigmoid(-t) from e = exp(-|t|): neither overflows.
CNNKIT_HD double sigmoid_double(double t) {
  const double e = exp(-fabs(t));
  return t >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
CNNKIT_HD double sigmoid_slope(double t) {
  const double e = exp(-fabs(t));
  return e / ((1.0 + e) * (1.0 + e));
}

// 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); the
// derivative is s + 2 x s (1 - s) u'. In double x^3 cannot overflow.
CNNKIT_HD double gelu_tanh_u(double x) { return kGeluTanhC * (x + kGeluCubic * x * x * x); }
CNNKIT_HD float gelu_tanh(float x) { return static_cast<float>(x * sigmoid_double(2.0 * gelu_tanh_u(x))); }
CNNKIT_HD float gelu_tanh_grad(float dy, float x) {
  const double v = x, t = 2.0 * gelu_tanh_u(v);
  const double du = kGeluTanhC * (1.0 + 3.0 * kGeluCubic * v * v);
  return static_cast<float>(dy * (sigmoid_double(t) + 2.0 * v * sigmoid_slope(t) * du));
}

// x sigmoid(x); the derivative s + x s (1 - s) with s (1 - s) from e, not 1 - s.
CNNKIT_HD float silu(float x) { return static_cast<float>(x * sigmoid_double(x)); }
CNNKIT_HD float silu_grad(float dy, float x) {
  return static_cast<float>(dy * (sigmoid_double(x) + x * sigmoid_slope(x)));
}

CNNKIT_HD float prelu(float x, float w) { return x > 0.0f ? x : w * x; }
CNNKIT_HD float prelu_grad(float dy, float x, float w) { return x > 0.0f ? dy : w * dy; }
// Contribution of one element to d(weight).
CNNKIT_HD float prelu_weight_grad(float dy, float x) { return x > 0.0f ? 0.0f : x * dy; }

}  // namespace act
}  // namespace cnnkit
