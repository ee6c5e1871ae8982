// Activations on one contiguous range, written once over a lane type V
// (simd/avx2.h, simd/avx512.h). Each op follows its scalar definition in
// formulas.h: the same branch tests (so kinks and NaN go the same way) and the
// same algebra, with vmath's exp/expm1/log1p for libm's. The last partial
// vector is processed with masked loads and stores, so every element gets the
// same lane arithmetic wherever the range starts: results do not depend on how
// parallel_for splits the work.
//
// Include after the lane type, from *_avx2.cpp / *_avx512.cpp files only.
#pragma once
#include <cstdint>

#include "cnnkit/act.h"
#include "cpu/simd/vmath.h"

namespace cnnkit {
namespace {

template <class V, class Fn>
void map1(const float* x, float* y, int64_t n, Fn f) {
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) V::store(y + i, f(V::load(x + i)));
  if (i < n) V::store_partial(y + i, f(V::load_partial(x + i, n - i)), n - i);
}

template <class V, class Fn>
void map2(const float* dy, const float* x, float* dx, int64_t n, Fn f) {
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) {
    V::store(dx + i, f(V::load(dy + i), V::load(x + i)));
  }
  if (i < n) {
    V::store_partial(dx + i, f(V::load_partial(dy + i, n - i), V::load_partial(x + i, n - i)),
                     n - i);
  }
}

// 1/(1 + e) or e/(1 + e) with e = exp(-|x|) <= 1: nothing overflows.
template <class V>
typename V::F sigmoid(typename V::F x) {
  const typename V::F e = vmath::exp_nonpositive<V>(V::sub(V::zero(), V::abs(x)));
  const typename V::F num = V::select(V::ge(x, V::zero()), V::set1(1.0f), e);
  return V::div(num, V::add(V::set1(1.0f), e));
}

// dy * e / (1 + e)^2, e = exp(-k|x|): the derivative of sigmoid (k = 1) and, times 4,
// of tanh (k = 2), without the cancellation of 1 - s^2 where s rounds to 1.
template <class V>
typename V::F bell(typename V::F x, float k) {
  using F = typename V::F;
  const F e = vmath::exp_nonpositive<V>(V::mul(V::set1(-k), V::abs(x)));
  const F d = V::add(V::set1(1.0f), e);
  return V::div(e, V::mul(d, d));
}

// tanh|x| = -t / (t + 2) with t = expm1(-2|x|) in [-1, 0]: accurate near 0
// (t ~ -2|x| to full relative precision) and exactly 1 once t rounds to -1.
template <class V>
typename V::F tanh(typename V::F x) {
  const typename V::F t = vmath::expm1_nonpositive<V>(V::mul(V::set1(-2.0f), V::abs(x)));
  const typename V::F r = V::div(V::sub(V::zero(), t), V::add(t, V::set1(2.0f)));
  return V::copysign(r, x);
}

// Phi(x) = erfc(-x / sqrt 2) / 2 and, in `density`, phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
// erfc(a) = t exp(P(t) - a^2), t = 1 / (1 + a/2), with the Chebyshev fit P of
// Numerical Recipes (section 6.2, relative error < 1.2e-7 for every a >= 0).
// a^2 = x^2 / 2 enters the exponent exactly (FMA residual, then TwoSum with
// P), so the tail keeps its relative accuracy where erfc is tiny.
template <class V>
typename V::F normal_cdf(typename V::F x, typename V::F* density) {
  using F = typename V::F;
  static constexpr float kFit[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f,
                                   0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f,
                                   1.00002368f, -1.26551223f};
  const F half = V::set1(0.5f);
  const F a = V::mul(V::abs(x), V::set1(0.70710678f));
  const F t = V::div(V::set1(1.0f), V::fma(half, a, V::set1(1.0f)));
  F poly = V::set1(kFit[0]);
  for (int k = 1; k < 10; ++k) poly = V::fma(poly, t, V::set1(kFit[k]));
  const F xx = V::mul(x, x);
  const F sq_hi = V::mul(xx, half);  // x^2 / 2 rounded ...
  // ... and minus its error, 0 where x^2 is inf (inf - inf would be NaN).
  const F sq_lo = V::select(V::lt(xx, V::set1(__builtin_inff())),
                            V::mul(V::fnma(x, x, xx), half), V::zero());
  F lo = V::zero();
  const F arg = vmath::difference<V>(poly, sq_hi, lo);
  const F tail = V::mul(half, V::mul(t, vmath::exp_nonpositive<V>(arg, V::add(lo, sq_lo))));
  if (density) {
    *density = V::mul(V::set1(0.39894228f),
                      vmath::exp_nonpositive<V>(V::sub(V::zero(), sq_hi), sq_lo));
  }
  return V::select(V::lt(x, V::zero()), tail, V::sub(V::set1(1.0f), tail));
}

// u = sqrt(2/pi) (x + 0.044715 x^3); GELU's tanh form is x sigmoid(2u).
template <class V>
typename V::F gelu_tanh_2u(typename V::F x) {
  const typename V::F x3 = V::mul(V::mul(x, x), x);
  return V::mul(V::set1(2.0f * 0.79788456f), V::fma(V::set1(0.044715f), x3, x));
}

template <class V>
void forward_range(const ActParams& p, const float* x, float* y, int64_t n) {
  using F = typename V::F;
  const F zero = V::zero();
  const F alpha = V::set1(p.alpha);
  switch (p.kind) {
    case Activation::Relu:
      return map1<V>(x, y, n, [&](F v) { return V::select(V::lt(v, zero), zero, v); });
    case Activation::LeakyRelu:
      return map1<V>(x, y, n, [&](F v) { return V::select(V::gt(v, zero), v, V::mul(v, alpha)); });
    case Activation::Elu:
      return map1<V>(x, y, n, [&](F v) {
        const F neg = V::mul(alpha, vmath::expm1_nonpositive<V>(V::min(zero, v)));
        return V::select(V::le(v, zero), neg, v);
      });
    case Activation::Relu6:
      return map1<V>(x, y, n, [&](F v) {
        const F six = V::set1(6.0f);
        return V::select(V::lt(v, zero), zero, V::select(V::gt(v, six), six, v));
      });
    case Activation::Sigmoid: return map1<V>(x, y, n, [](F v) { return sigmoid<V>(v); });
    case Activation::Tanh: return map1<V>(x, y, n, [](F v) { return tanh<V>(v); });
    case Activation::Softplus: {
      const F beta = V::set1(p.beta), threshold = V::set1(p.threshold);
      return map1<V>(x, y, n, [&](F v) {
        const F t = V::mul(beta, v);
        const F e = vmath::exp_nonpositive<V>(V::sub(zero, V::abs(t)));
        const F pos = V::select(V::gt(t, zero), t, zero);  // NaN reaches the log term
        const F soft = V::div(V::add(pos, vmath::log1p_unit<V>(e)), beta);
        return V::select(V::gt(t, threshold), v, soft);
      });
    }
    case Activation::Hardtanh: {
      const F lo = V::set1(p.min_val), hi = V::set1(p.max_val);
      return map1<V>(x, y, n, [&](F v) {
        return V::select(V::lt(v, lo), lo, V::select(V::gt(v, hi), hi, v));
      });
    }
    case Activation::Gelu:
      return map1<V>(x, y, n, [](F v) { return V::mul(v, normal_cdf<V>(v, nullptr)); });
    case Activation::GeluTanh:
      return map1<V>(x, y, n, [](F v) { return V::mul(v, sigmoid<V>(gelu_tanh_2u<V>(v))); });
    case Activation::Silu: return map1<V>(x, y, n, [](F v) { return V::mul(v, sigmoid<V>(v)); });
  }
}

template <class V>
void backward_range(const ActParams& p, const float* dy, const float* x, float* dx, int64_t n) {
  using F = typename V::F;
  const F zero = V::zero();
  const F alpha = V::set1(p.alpha);
  switch (p.kind) {
    case Activation::Relu:
      return map2<V>(dy, x, dx, n, [&](F g, F v) { return V::select(V::le(v, zero), zero, g); });
    case Activation::LeakyRelu:
      return map2<V>(dy, x, dx, n,
                     [&](F g, F v) { return V::select(V::gt(v, zero), g, V::mul(g, alpha)); });
    case Activation::Elu:
      return map2<V>(dy, x, dx, n, [&](F g, F v) {
        const F neg = V::mul(g, V::mul(alpha, vmath::exp_nonpositive<V>(V::min(zero, v))));
        return V::select(V::gt(v, zero), g, neg);
      });
    case Activation::Relu6:
      return map2<V>(dy, x, dx, n, [&](F g, F v) {
        return V::select(V::both(V::gt(v, zero), V::lt(v, V::set1(6.0f))), g, zero);
      });
    case Activation::Sigmoid:
      return map2<V>(dy, x, dx, n, [](F g, F v) { return V::mul(g, bell<V>(v, 1.0f)); });
    case Activation::Tanh:
      return map2<V>(dy, x, dx, n,
                     [](F g, F v) { return V::mul(g, V::mul(V::set1(4.0f), bell<V>(v, 2.0f))); });
    case Activation::Softplus: {
      const F beta = V::set1(p.beta), threshold = V::set1(p.threshold);
      return map2<V>(dy, x, dx, n, [&](F g, F v) {
        const F t = V::mul(beta, v);
        return V::select(V::gt(t, threshold), g, V::mul(g, sigmoid<V>(t)));
      });
    }
    case Activation::Hardtanh: {
      const F lo = V::set1(p.min_val), hi = V::set1(p.max_val);
      return map2<V>(dy, x, dx, n, [&](F g, F v) {
        return V::select(V::both(V::gt(v, lo), V::lt(v, hi)), g, zero);
      });
    }
    case Activation::Gelu:
      return map2<V>(dy, x, dx, n, [](F g, F v) {
        F density = V::zero();
        const F cdf = normal_cdf<V>(v, &density);
        return V::mul(g, V::fma(v, density, cdf));
      });
    case Activation::GeluTanh:
      return map2<V>(dy, x, dx, n, [&](F g, F v) {
        const F t = gelu_tanh_2u<V>(v);
        // 2 u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2); past |x| = 1e4 (x^2 may
        // overflow) s (1 - s) is exactly 0 and so is the term, except at +-inf,
        // where inf * 0 is NaN as in the formula (x - x: 0, or NaN for inf).
        const F du2 = V::mul(V::set1(2.0f * 0.79788456f),
                             V::fma(V::set1(3.0f * 0.044715f), V::mul(v, v), V::set1(1.0f)));
        const F term = V::mul(V::mul(v, bell<V>(t, 1.0f)), du2);
        const F safe = V::select(V::lt(V::abs(v), V::set1(1e4f)), term, V::sub(v, v));
        return V::mul(g, V::add(sigmoid<V>(t), safe));
      });
    case Activation::Silu:
      return map2<V>(dy, x, dx, n, [](F g, F v) {
        return V::mul(g, V::fma(v, bell<V>(v, 1.0f), sigmoid<V>(v)));
      });
  }
}

// out = a + b, with relu then clamped by relu's test (NaN kept).
template <class V>
void add_range(const float* a, const float* b, float* out, int64_t n, bool relu) {
  using F = typename V::F;
  if (relu) {
    map2<V>(a, b, out, n, [](F u, F v) {
      const F s = V::add(u, v);
      return V::select(V::lt(s, V::zero()), V::zero(), s);
    });
  } else {
    map2<V>(a, b, out, n, [](F u, F v) { return V::add(u, v); });
  }
}

}  // namespace
}  // namespace cnnkit
