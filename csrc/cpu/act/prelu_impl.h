// PReLU on one contiguous row with one weight, written once over a lane type V
// (prelu_avx2.cpp, prelu_avx512.cpp), with the branch tests of formulas.h so
// NaN goes the same way. The last partial vector uses masked loads and stores.
//
// Include after the lane type, from *_avx2.cpp / *_avx512.cpp files only.
#pragma once
#include <cstdint>

namespace cnnkit {
namespace {

template <class V>
void prelu_row_forward(const float* x, float* y, int64_t n, float weight) {
  using F = typename V::F;
  const F w = V::set1(weight);
  auto f = [&](F v) { return V::select(V::gt(v, V::zero()), v, V::mul(w, v)); };
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) V::store(y + i, f(V::load(x + i)));
  if (i < n) V::store_partial(y + i, f(V::load_partial(x + i, n - i)), n - i);
}

// dx = dy where x > 0 else weight * dy; returns the sum of x * dy where x <= 0,
// accumulated per lane in double.
template <class V>
double prelu_row_backward(const float* dy, const float* x, float* dx, int64_t n, float weight) {
  using F = typename V::F;
  const F w = V::set1(weight);
  typename V::D lo = V::dzero(), hi = V::dzero();
  auto step = [&](F g, F v) {
    const typename V::M positive = V::gt(v, V::zero());
    V::accumulate(lo, hi, V::select(positive, V::zero(), V::mul(v, g)));
    return V::select(positive, g, V::mul(w, g));
  };
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) V::store(dx + i, step(V::load(dy + i), V::load(x + i)));
  if (i < n) {
    const int64_t m = n - i;
    V::store_partial(dx + i, step(V::load_partial(dy + i, m), V::load_partial(x + i, m)), m);
  }
  return V::total(lo, hi);
}

}  // namespace
}  // namespace cnnkit
