// The Avx512 vector type the conv kernel templates take (see direct_rows_impl.h).
// Include only from *_avx512.cpp files, which CMake compiles with the AVX-512 flags.
#pragma once
#include <immintrin.h>

namespace cnnkit {
namespace {

struct SimdAvx512 {
  static constexpr int kLanes = 16;
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};

}  // namespace
}  // namespace cnnkit
