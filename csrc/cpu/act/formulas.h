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

CNNKIT_HD float prelu(float x, float w) { return x > 0.0f ? x : w * x; }
CNNKIT_HD float prelu_grad(float dy, float x, float w) { return x > 0.0f ? dy : w * dy; }
// Contribution of one element to d(weight).
CNNKIT_HD float prelu_weight_grad(float dy, float x) { return x > 0.0f ? 0.0f : x * dy; }

// NaN fails both tests and passes through; its gradient is 0, as at the bounds (PyTorch's).
CNNKIT_HD float hardtanh(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
CNNKIT_HD float hardtanh_grad(float dy, float x, float lo, float hi) { return (x > lo && x < hi) ? dy : 0.0f; }

// GELU and SiLU in double, rounded once, as the CPU path computes them. Phi(x) = erfc(-x/sqrt 2)/2
// has no cancellation where Phi is tiny; the tanh form's (1 + tanh u)/2 is written 1/(1 + e^-2u)
// for the same reason.
constexpr double kGeluTanhC = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;
CNNKIT_HD float gelu(float x) { return static_cast<float>(x * (0.5 * erfc(-x * 0.7071067811865476))); }
CNNKIT_HD float gelu_grad(float dy, float x) {
  const double v = x;
  return static_cast<float>(dy * (0.5 * erfc(-v * 0.7071067811865476) + v * exp(-0.5 * v * v) * 0.3989422804014327));
}
CNNKIT_HD float gelu_tanh(float x) {
  const double v = x;
  return static_cast<float>(v / (1.0 + exp(-2.0 * kGeluTanhC * (v + kGeluCubic * v * v * v))));
}
CNNKIT_HD float gelu_tanh_grad(float dy, float x) {
  const double v = x;
  const double u = kGeluTanhC * (v + kGeluCubic * v * v * v);
  const double cdf = 1.0 / (1.0 + exp(-2.0 * u));
  const double du = kGeluTanhC * (1.0 + 3.0 * kGeluCubic * v * v);
  return static_cast<float>(dy * (cdf + 2.0 * v * cdf / (1.0 + exp(2.0 * u)) * du));
}
// -inf * sigmoid(-inf) = -inf * 0: NaN, as PyTorch.
CNNKIT_HD float silu(float x) { return static_cast<float>(x / (1.0 + exp(-static_cast<double>(x)))); }
// s (1 + x s(-x)) with s(-x) rather than 1 - s(x), which cancels for large x.
CNNKIT_HD float silu_grad(float dy, float x) {
  const double v = x;
  const double s = 1.0 / (1.0 + exp(-v));
  return static_cast<float>(dy * s * (1.0 + v / (1.0 + exp(v))));
}

}  // namespace act
}  // namespace cnnkit
