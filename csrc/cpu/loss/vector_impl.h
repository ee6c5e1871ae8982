// Softmax, log-softmax and cross-entropy rows (the class axis contiguous),
// written once over a lane type V (simd/avx2.h, simd/avx512.h). Follows
// threaded.cpp: the row maximum by the scalar rule (NaN never wins, so a NaN
// or +inf in the row makes every output NaN, as PyTorch), sums of exps in
// double, and x - max carried as an exact hi + lo pair into
// vmath::exp_nonpositive, so a logit far below the maximum keeps its relative
// accuracy.
//
// Include after the lane type, from *_avx2.cpp / *_avx512.cpp files only.
#pragma once
#include <math.h>

#include <cstdint>

#include "cpu/simd/vmath.h"

namespace cnnkit {
namespace {

// The row maximum by the rule `v > m ? v : m`. Four running maxima: one
// compare and masked move per vector, chained through a single maximum,
// took 4 cycles a vector, a quarter of cross-entropy's forward on 1000
// classes. Which of equal values wins (+0 or -0) does not change any result.
template <class V>
float row_max(const float* x, int64_t C) {
  using F = typename V::F;
  constexpr int64_t L = V::kWidth;
  const F lowest = V::set1(-__builtin_inff());
  F m[4] = {lowest, lowest, lowest, lowest};
  const auto take = [](F v, F& mi) { mi = V::select(V::gt(v, mi), v, mi); };
  int64_t j = 0;
  for (; j + 4 * L <= C; j += 4 * L)
    for (int i = 0; i < 4; ++i) take(V::load(x + j + i * L), m[i]);
  for (; j + L <= C; j += L) take(V::load(x + j), m[0]);
  if (j < C) {
    const F v = V::load_partial(x + j, C - j);
    m[1] = V::select(V::both(V::first(C - j), V::gt(v, m[1])), v, m[1]);
  }
  take(m[1], m[0]);
  take(m[3], m[2]);
  take(m[2], m[0]);
  return V::max_lane(m[0]);
}

template <class V>
typename V::F exp_shifted(typename V::F x, typename V::F m) {
  typename V::F lo;
  const typename V::F hi = vmath::difference<V>(x, m, lo);
  return vmath::exp_nonpositive<V>(hi, lo);
}

// sum of exp(x - m) over the row, in double; with `store`, the exps go to y.
template <class V>
double row_sum_exp(const float* x, int64_t C, float m, float* store) {
  using F = typename V::F;
  using D = typename V::D;
  const F mv = V::set1(m);
  D lo = V::dzero(), hi = V::dzero();
  int64_t j = 0;
  for (; j + V::kWidth <= C; j += V::kWidth) {
    const F e = exp_shifted<V>(V::load(x + j), mv);
    if (store != nullptr) V::store(store + j, e);
    V::accumulate(lo, hi, e);
  }
  if (j < C) {
    const F e = V::select(V::first(C - j), exp_shifted<V>(V::load_partial(x + j, C - j), mv),
                          V::zero());
    if (store != nullptr) V::store_partial(store + j, e, C - j);
    V::accumulate(lo, hi, e);
  }
  return V::total(lo, hi);
}

// y = f(a, b) over a row, for kernels of two inputs.
template <class V, class Fn>
void row_map(const float* a, const float* b, float* y, int64_t C, Fn f) {
  int64_t j = 0;
  for (; j + V::kWidth <= C; j += V::kWidth) V::store(y + j, f(V::load(a + j), V::load(b + j)));
  if (j < C) {
    V::store_partial(y + j, f(V::load_partial(a + j, C - j), V::load_partial(b + j, C - j)),
                     C - j);
  }
}

template <class V>
void softmax_rows(bool log_output, const float* x, float* y, int64_t rows, int64_t C) {
  using F = typename V::F;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    const float m = row_max<V>(xr, C);
    const double sum = row_sum_exp<V>(xr, C, m, log_output ? nullptr : yr);
    if (log_output) {
      // (x - m) - log(sum), the two subtracted one after the other: m + log(sum)
      // would drop log(sum) when |m| is large.
      const F mv = V::set1(m), log_sum = V::set1(static_cast<float>(::log(sum)));
      row_map<V>(xr, xr, yr, C, [&](F v, F) {
        F lo;
        const F hi = vmath::difference<V>(v, mv, lo);
        return V::add(V::sub(hi, log_sum), lo);
      });
    } else {
      const F scale = V::set1(static_cast<float>(1.0 / sum));
      row_map<V>(yr, yr, yr, C, [&](F e, F) { return V::mul(e, scale); });
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy).
template <class V>
void softmax_backward_rows(bool log_output, const float* dy, const float* y, float* dx,
                           int64_t rows, int64_t C) {
  using F = typename V::F;
  using D = typename V::D;
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = dy + r * C;
    const float* yr = y + r * C;
    float* dxr = dx + r * C;
    D lo = V::dzero(), hi = V::dzero();
    int64_t j = 0;
    // Lanes past C load as 0, so they add nothing.
    for (; j + V::kWidth <= C; j += V::kWidth) {
      const F g = V::load(gr + j);
      V::accumulate(lo, hi, log_output ? g : V::mul(g, V::load(yr + j)));
    }
    if (j < C) {
      const F g = V::load_partial(gr + j, C - j);
      V::accumulate(lo, hi, log_output ? g : V::mul(g, V::load_partial(yr + j, C - j)));
    }
    const F sum = V::set1(static_cast<float>(V::total(lo, hi)));
    if (log_output) {
      row_map<V>(gr, yr, dxr, C, [&](F g, F v) { return V::fnma(vmath::exp<V>(v), sum, g); });
    } else {
      row_map<V>(gr, yr, dxr, C, [&](F g, F v) { return V::mul(v, V::sub(g, sum)); });
    }
  }
}

// Per-row loss log(sum exp(x - m)) - (x_t - m), 0 for ignored rows.
template <class V>
void cross_entropy_rows(const float* logits, const int64_t* target, int64_t rows, int64_t C,
                        int64_t ignore_index, double* losses) {
  for (int64_t r = 0; r < rows; ++r) {
    losses[r] = 0.0;
    if (target[r] == ignore_index) continue;
    const float* xr = logits + r * C;
    const float m = row_max<V>(xr, C);
    const double sum = row_sum_exp<V>(xr, C, m, nullptr);
    losses[r] = ::log(sum) - (static_cast<double>(xr[target[r]]) - m);
  }
}

// grad = scale * (softmax(x) - onehot(t)); scale[r] per row, ignored rows get zeros.
template <class V>
void cross_entropy_backward_rows(const float* logits, const int64_t* target, int64_t rows,
                                 int64_t C, int64_t ignore_index, const double* scale,
                                 float* grad) {
  using F = typename V::F;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = logits + r * C;
    float* gr = grad + r * C;
    const int64_t t = target[r];
    if (t == ignore_index) {
      row_map<V>(xr, xr, gr, C, [](F, F) { return V::zero(); });
      continue;
    }
    const float m = row_max<V>(xr, C);
    const double inv_sum = 1.0 / row_sum_exp<V>(xr, C, m, gr);
    const F factor = V::set1(static_cast<float>(scale[r] * inv_sum));
    row_map<V>(gr, gr, gr, C, [&](F e, F) { return V::mul(e, factor); });
    // The target's entry loses 1 in double, as in the scalar kernel: p - 1 cancels.
    const double p = ::exp(static_cast<double>(xr[t]) - m) * inv_sum;
    gr[t] = static_cast<float>(scale[r] * (p - 1.0));
  }
}

}  // namespace
}  // namespace cnnkit
