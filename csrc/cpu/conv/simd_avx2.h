// The Avx2 vector type the conv kernel templates take (see direct_rows_impl.h).
// Include only from *_avx2.cpp files, which CMake compiles with -mavx2 -mfma.
#pragma once
#include <immintrin.h>

namespace cnnkit {
namespace {

struct SimdAvx2 {
  static constexpr int kLanes = 8;
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

}  // namespace
}  // namespace cnnkit
