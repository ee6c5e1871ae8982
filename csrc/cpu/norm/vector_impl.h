// Batch-norm passes over a run of rows of one channel (rows of `spatial`
// floats, `stride` floats apart), written once over a lane type V
// (vector_avx2.cpp, vector_avx512.cpp); vector.cpp splits channels and rows
// over threads and combines the partial sums.
//
// Statistics: d = x - shift in float, with the shift a value of the channel:
// where the data sit far from 0 relative to their spread (mean 1e7 +- 4),
// x and the shift are within a factor 2 of each other, so d is exact (Sterbenz)
// and its square loses no more than a rounding. The d sums run per lane in
// float over at most kBlock vectors, then go into double accumulators: the
// float part adds a few roundings of a block's size, the double part nothing
// measurable, however many rows a channel has.
//
// Include after the lane type, from *_avx2.cpp / *_avx512.cpp files only.
#pragma once
#include <cstdint>

namespace cnnkit {
namespace {

constexpr int64_t kBlock = 16;

template <class V>
struct Sums {
  typename V::D lo[4], hi[4];  // sum d, sum d^2, sum dy, sum dy * d
  typename V::F f[4];
  int64_t pending = 0;

  Sums() {
    for (int k = 0; k < 4; ++k) {
      lo[k] = hi[k] = V::dzero();
      f[k] = V::zero();
    }
  }
  template <int kCount>
  void flush() {
    for (int k = 0; k < kCount; ++k) {
      V::accumulate(lo[k], hi[k], f[k]);
      f[k] = V::zero();
    }
    pending = 0;
  }
  template <int kCount>
  void add(typename V::F d, typename V::F g) {
    f[0] = V::add(f[0], d);
    f[1] = V::fma(d, d, f[1]);
    if (kCount == 4) {
      f[2] = V::add(f[2], g);
      f[3] = V::fma(g, d, f[3]);
    }
    if (++pending == kBlock) flush<kCount>();
  }
};

// The gradient through a fused ReLU: dy where the ReLU's output is > 0 (NaN
// included, as relu_backward), else 0.
template <class V>
typename V::F through_relu(typename V::F dy, typename V::F out) {
  return V::select(V::le(out, V::zero()), V::zero(), dy);
}

// out[0] = sum (x - shift), out[1] = sum (x - shift)^2 and, when dy is not
// null, out[2] = sum g, out[3] = sum g * (x - shift), g = dy or, with kMasked,
// dy through the ReLU whose output is `mask`.
template <class V, int kCount, bool kMasked>
void sums_impl(const float* x, const float* dy, const float* mask, int64_t rows, int64_t stride,
               int64_t spatial, float shift, double* out) {
  using F = typename V::F;
  const int64_t W = V::kWidth;
  const F k = V::set1(shift);
  Sums<V> acc;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    const float* gr = kCount == 4 ? dy + r * stride : nullptr;
    const float* mr = kMasked ? mask + r * stride : nullptr;
    int64_t i = 0;
    for (; i + W <= spatial; i += W) {
      F g = k;
      if (kCount == 4) g = kMasked ? through_relu<V>(V::load(gr + i), V::load(mr + i)) : V::load(gr + i);
      acc.template add<kCount>(V::sub(V::load(xr + i), k), g);
    }
    if (i < spatial) {
      const int64_t n = spatial - i;
      // Masked-off lanes load 0: their d must be 0, not -shift.
      const F d = V::select(V::first(n), V::sub(V::load_partial(xr + i, n), k), V::zero());
      F g = k;
      if (kCount == 4) {
        g = V::load_partial(gr + i, n);
        if (kMasked) g = through_relu<V>(g, V::load_partial(mr + i, n));
      }
      acc.template add<kCount>(d, g);
    }
  }
  acc.template flush<kCount>();
  for (int q = 0; q < kCount; ++q) out[q] = V::total(acc.lo[q], acc.hi[q]);
}

template <class V>
void sums(const float* x, const float* dy, const float* mask, int64_t rows, int64_t stride,
          int64_t spatial, float shift, double* out) {
  if (dy == nullptr) {
    sums_impl<V, 2, false>(x, nullptr, nullptr, rows, stride, spatial, shift, out);
  } else if (mask == nullptr) {
    sums_impl<V, 4, false>(x, dy, nullptr, rows, stride, spatial, shift, out);
  } else {
    sums_impl<V, 4, true>(x, dy, mask, rows, stride, spatial, shift, out);
  }
}

template <class V, class Fn>
void map_rows(int64_t rows, int64_t stride, int64_t spatial, Fn&& fn) {
  const int64_t W = V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t at = r * stride;
    int64_t i = 0;
    for (; i + W <= spatial; i += W) fn(at + i, V::kWidth);
    if (i < spatial) fn(at + i, spatial - i);
  }
}

template <class V>
typename V::F load_n(const float* p, int64_t n) {
  return n == V::kWidth ? V::load(p) : V::load_partial(p, n);
}

template <class V>
void store_n(float* p, typename V::F v, int64_t n) {
  if (n == V::kWidth) {
    V::store(p, v);
  } else {
    V::store_partial(p, v, n);
  }
}

// y = (x - center) * scale + shift; with kRelu, 0 where that is < 0 (NaN kept, as relu).
template <class V, bool kRelu>
void normalise_impl(const float* x, float* y, int64_t rows, int64_t stride, int64_t spatial,
                    float center, float scale, float shift) {
  using F = typename V::F;
  const F c = V::set1(center), a = V::set1(scale), b = V::set1(shift);
  map_rows<V>(rows, stride, spatial, [&](int64_t at, int64_t n) {
    F v = V::fma(V::sub(load_n<V>(x + at, n), c), a, b);
    if (kRelu) v = V::select(V::lt(v, V::zero()), V::zero(), v);
    store_n<V>(y + at, v, n);
  });
}

template <class V>
void normalise(const float* x, float* y, int64_t rows, int64_t stride, int64_t spatial,
               float center, float scale, float shift, bool relu) {
  if (relu) {
    normalise_impl<V, true>(x, y, rows, stride, spatial, center, scale, shift);
  } else {
    normalise_impl<V, false>(x, y, rows, stride, spatial, center, scale, shift);
  }
}

// dx = g * a + ((x - center) * b + c), or g * a when x is null; g = dy, or
// with kMasked dy through the ReLU whose output is `mask`.
template <class V, bool kMasked>
void input_grad_impl(const float* dy, const float* mask, const float* x, float* dx, int64_t rows,
                     int64_t stride, int64_t spatial, float center, float a, float b, float c) {
  using F = typename V::F;
  const F vc = V::set1(center), va = V::set1(a), vb = V::set1(b), cc = V::set1(c);
  auto grad = [&](int64_t at, int64_t n) {
    const F g = load_n<V>(dy + at, n);
    return kMasked ? through_relu<V>(g, load_n<V>(mask + at, n)) : g;
  };
  if (x == nullptr) {
    map_rows<V>(rows, stride, spatial, [&](int64_t at, int64_t n) {
      store_n<V>(dx + at, V::mul(grad(at, n), va), n);
    });
    return;
  }
  map_rows<V>(rows, stride, spatial, [&](int64_t at, int64_t n) {
    const F centred = V::sub(load_n<V>(x + at, n), vc);
    store_n<V>(dx + at, V::fma(grad(at, n), va, V::fma(centred, vb, cc)), n);
  });
}

template <class V>
void input_grad(const float* dy, const float* mask, const float* x, float* dx, int64_t rows,
                int64_t stride, int64_t spatial, float center, float a, float b, float c) {
  if (mask == nullptr) {
    input_grad_impl<V, false>(dy, nullptr, x, dx, rows, stride, spatial, center, a, b, c);
  } else {
    input_grad_impl<V, true>(dy, mask, x, dx, rows, stride, spatial, center, a, b, c);
  }
}

}  // namespace
}  // namespace cnnkit
