// Vector exp, expm1 and log1p in float32, written once over the operations of
// a lane type V (simd/avx2.h, simd/avx512.h) so every ISA runs the same
// algorithm. Accuracy (measured by tests/test_activations.py over dense sweeps):
// a few units of roundoff u = 2^-24 relative, as the tolerance rule needs.
// Special values follow the C functions: NaN propagates, exp(-inf) = 0,
// exp(+inf) = inf, results below the normal range are subnormal, not flushed.
//
// Include after the lane type, from *_avx2.cpp / *_avx512.cpp files only.
#pragma once
#include <cstdint>

namespace cnnkit {
namespace {
namespace vmath {

constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split so that n * kLn2Hi is exact for |n| < 2^15 (kLn2Hi has 9
// significant bits): x - n ln2 is then computed without cancellation error.
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;

// e^r - 1 for |r| <= ln2/2 (+ a little): r + r^2 (1/2! + r/3! + ... + r^6/8!).
// The first omitted term, r^9/9!, is < 1e-9 relative; q keeps full relative
// accuracy as r -> 0, which is what expm1 needs.
template <class V>
typename V::F expm1_reduced(typename V::F r) {
  using F = typename V::F;
  F p = V::set1(1.0f / 40320.0f);
  p = V::fma(p, r, V::set1(1.0f / 5040.0f));
  p = V::fma(p, r, V::set1(1.0f / 720.0f));
  p = V::fma(p, r, V::set1(1.0f / 120.0f));
  p = V::fma(p, r, V::set1(1.0f / 24.0f));
  p = V::fma(p, r, V::set1(1.0f / 6.0f));
  p = V::fma(p, r, V::set1(0.5f));
  return V::fma(V::mul(r, r), p, r);
}

// x = n ln2 + r with n integral and |r| <= ln2/2.
template <class V>
typename V::F reduce(typename V::F x, typename V::F& n) {
  n = V::round(V::mul(x, V::set1(kLog2e)));
  const typename V::F r = V::fnma(n, V::set1(kLn2Hi), x);
  return V::fnma(n, V::set1(kLn2Lo), r);
}

// e^x over the whole float range (exp_nonpositive below is leaner where x <= 0).
template <class V>
typename V::F exp(typename V::F x) {
  using F = typename V::F;
  // Outside [-104, 89] e^x rounds to 0 or overflows anyway; the clamp keeps n
  // within [-150, 128]. max(lo, x) and min(hi, .) return x when it is NaN.
  x = V::min(V::set1(89.0f), V::max(V::set1(-104.0f), x));
  F n;
  const F r = reduce<V>(x, n);
  const F p = V::add(expm1_reduced<V>(r), V::set1(1.0f));
  // 2^n in two exact factors, each a normal float: the product rounds once,
  // into a subnormal or to inf where it must.
  const F n1 = V::floor(V::mul(n, V::set1(0.5f)));
  return V::mul(V::mul(p, V::pow2(n1)), V::pow2(V::sub(n, n1)));
}

// e^(x + lo) for x + lo <= 0 or NaN, |lo| <= ulp(x)/2: softmax's x - max
// (whose low part, computed exactly as x + lo, joins the reduced argument,
// where it is not lost), sigmoid's -|x| and the other activations' arguments.
// With no overflow to guard against, e^r is one degree-7 polynomial (first
// omitted term < 0.15 u) and 2^n one exact scaling by 2^(n + 64), n + 64 in
// [-86, 64], followed by the constant 2^-64, which rounds once, into a
// subnormal or to 0 where it must: 18 operations against exp's 28.
template <class V>
typename V::F exp_nonpositive(typename V::F x, typename V::F lo) {
  using F = typename V::F;
  x = V::max(V::set1(-104.0f), x);  // e^-104 rounds to 0; n stays >= -150
  F n;
  const F r = V::add(reduce<V>(x, n), lo);
  F p = V::set1(1.0f / 5040.0f);
  p = V::fma(p, r, V::set1(1.0f / 720.0f));
  p = V::fma(p, r, V::set1(1.0f / 120.0f));
  p = V::fma(p, r, V::set1(1.0f / 24.0f));
  p = V::fma(p, r, V::set1(1.0f / 6.0f));
  p = V::fma(p, r, V::set1(0.5f));
  p = V::fma(p, r, V::set1(1.0f));
  p = V::fma(p, r, V::set1(1.0f));
  return V::mul(V::mul(p, V::pow2(V::add(n, V::set1(64.0f)))), V::set1(0x1p-64f));
}

template <class V>
typename V::F exp_nonpositive(typename V::F x) {
  return exp_nonpositive<V>(x, V::zero());
}

// a - b as hi + lo exactly (Knuth's TwoSum), lo = 0 where hi is not finite.
template <class V>
typename V::F difference(typename V::F a, typename V::F b, typename V::F& lo) {
  using F = typename V::F;
  const F nb = V::sub(V::zero(), b);
  const F hi = V::add(a, nb);
  const F bv = V::sub(hi, a);
  const F err = V::add(V::sub(a, V::sub(hi, bv)), V::sub(nb, bv));
  lo = V::select(V::lt(V::abs(hi), V::set1(__builtin_inff())), err, V::zero());
  return hi;
}

// e^x - 1 for x <= 0 (or NaN), accurate relative to the result as x -> 0:
// 2^n (e^r - 1) + (2^n - 1) in one FMA; 2^n - 1 is exact for n >= -24, and
// below that the result is -1 to within half an ulp.
template <class V>
typename V::F expm1_nonpositive(typename V::F x) {
  using F = typename V::F;
  x = V::max(V::set1(-30.0f), x);
  F n;
  const F q = expm1_reduced<V>(reduce<V>(x, n));
  const F s = V::pow2(n);
  return V::fma(s, q, V::sub(s, V::set1(1.0f)));
}

// log(1 + e) for e in [0, 1] (or NaN). 1 + e = 2^k (1 + f) with f = e
// (k = 0, e < 1/2) or f = (e - 1)/2 (k = 1, exact by Sterbenz), so f lies in
// [-1/4, 1/2) and is never rounded; log(1 + f) = 2 atanh(s), s = f / (2 + f)
// in [-1/7, 1/5], as an odd series in s (first omitted term < 1e-9 relative).
template <class V>
typename V::F log1p_unit(typename V::F e) {
  using F = typename V::F;
  const typename V::M upper = V::ge(e, V::set1(0.5f));
  const F f = V::select(upper, V::mul(V::sub(e, V::set1(1.0f)), V::set1(0.5f)), e);
  const F s = V::div(f, V::add(f, V::set1(2.0f)));
  const F s2 = V::mul(s, s);
  F p = V::set1(2.0f / 11.0f);
  p = V::fma(p, s2, V::set1(2.0f / 9.0f));
  p = V::fma(p, s2, V::set1(2.0f / 7.0f));
  p = V::fma(p, s2, V::set1(2.0f / 5.0f));
  p = V::fma(p, s2, V::set1(2.0f / 3.0f));
  const F log_f = V::fma(V::mul(s, s2), p, V::add(s, s));
  // ln2 added in two parts: the small one first, while the sum is still small.
  const F shifted = V::add(V::add(log_f, V::set1(kLn2Lo)), V::set1(kLn2Hi));
  return V::select(upper, shifted, log_f);
}

}  // namespace vmath
}  // namespace
}  // namespace cnnkit
