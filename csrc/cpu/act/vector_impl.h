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
  }
}

}  // namespace
}  // namespace cnnkit
