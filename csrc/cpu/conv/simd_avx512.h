// The Avx512 vector type the conv kernel templates take (see direct_rows_impl.h).
// Include only from *_avx512.cpp files, which CMake compiles with the AVX-512 flags.
#pragma once
#include <immintrin.h>

#include <cstdint>

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
  // dst[k * stride + j] = lane k of rows[j], j < n: 16x16 transposes in
  // registers (missing rows zero), each output row a masked store.
  static void store_transposed(const V* rows, int n, float* dst, int64_t stride) {
    // The all-lanes maskz forms compile to the plain instructions; the plain
    // intrinsics pass GCC 12 an undefined vector it warns about.
    constexpr __mmask16 kAll = 0xFFFF;
    for (int j0 = 0; j0 < n; j0 += 16) {
      const int m = n - j0 < 16 ? n - j0 : 16;
      V r[16], t[16], u[16];
      for (int i = 0; i < 16; ++i) r[i] = i < m ? rows[j0 + i] : zero();
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
        t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
      }
      // u[4q + e], 128-bit lane l: element 4l + e of rows 4q .. 4q + 3.
      for (int q = 0; q < 16; q += 4) {
        u[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        u[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        u[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        u[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
      }
      const __mmask16 mask = static_cast<__mmask16>((1u << m) - 1u);
      for (int e = 0; e < 4; ++e) {
        const V a0 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0x88);
        const V a1 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0xDD);
        const V b0 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0x88);
        const V b1 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0xDD);
        float* d = dst + j0 + e * stride;
        _mm512_mask_storeu_ps(d, mask, _mm512_maskz_shuffle_f32x4(kAll, a0, b0, 0x88));
        _mm512_mask_storeu_ps(d + 4 * stride, mask, _mm512_maskz_shuffle_f32x4(kAll, a1, b1, 0x88));
        _mm512_mask_storeu_ps(d + 8 * stride, mask, _mm512_maskz_shuffle_f32x4(kAll, a0, b0, 0xDD));
        _mm512_mask_storeu_ps(d + 12 * stride, mask, _mm512_maskz_shuffle_f32x4(kAll, a1, b1, 0xDD));
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
