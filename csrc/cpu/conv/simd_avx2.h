// The Avx2 vector type the conv kernel templates take (see direct_rows_impl.h).
// Include only from *_avx2.cpp files, which CMake compiles with -mavx2 -mfma.
#pragma once
#include <immintrin.h>

#include <cstdint>

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
  // dst[k * stride + j] = lane k of rows[j], j < n: 8x8 transposes in
  // registers (missing rows zero), each output row a masked store.
  static void store_transposed(const V* rows, int n, float* dst, int64_t stride) {
    for (int j0 = 0; j0 < n; j0 += 8) {
      const int m = n - j0 < 8 ? n - j0 : 8;
      V r[8], t[8], u[8];
      for (int i = 0; i < 8; ++i) r[i] = i < m ? rows[j0 + i] : zero();
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      }
      // u[4q + e], 128-bit lane l: element 4l + e of rows 4q .. 4q + 3.
      for (int q = 0; q < 8; q += 4) {
        u[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        u[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
        u[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        u[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
      }
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (int e = 0; e < 4; ++e) {
        float* d = dst + j0 + e * stride;
        _mm256_maskstore_ps(d, mask, _mm256_permute2f128_ps(u[e], u[4 + e], 0x20));
        _mm256_maskstore_ps(d + 4 * stride, mask, _mm256_permute2f128_ps(u[e], u[4 + e], 0x31));
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
