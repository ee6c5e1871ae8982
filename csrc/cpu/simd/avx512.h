// 16-lane float vectors for AVX-512F: the same operations as avx2.h, so the
// code in vmath.h compiles unchanged for both. Include only from *_avx512.cpp
// files; all of it has internal linkage.
#pragma once
#include <immintrin.h>

#include <cstdint>

// GCC 12 warns inside its own AVX-512 intrinsics (their _mm512_undefined_*
// placeholders, GCC bug 105593) wherever they inline; nothing of ours is
// uninitialised. The including file is AVX-512 code only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same bug, where it is certain
#endif

namespace cnnkit {
namespace {

struct Avx512 {
  using F = __m512;
  using M = __mmask16;
  static constexpr int64_t kWidth = 16;
  static constexpr int kRegisters = 32;  // zmm0-31

  static F set1(float v) { return _mm512_set1_ps(v); }
  static F zero() { return _mm512_setzero_ps(); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  // Lanes [0, n) with 0 < n < kWidth; the others read as 0 and are never written.
  static __mmask16 tail(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static F load_partial(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail(n), p); }
  static void store_partial(float* p, F v, int64_t n) { _mm512_mask_storeu_ps(p, tail(n), v); }
  // Lane l = p[l] for lo <= l < hi (0 <= lo <= hi <= kWidth), 0 elsewhere; the
  // other lanes' addresses are never read (p may point before an array).
  static F load_lanes(const float* p, int64_t lo, int64_t hi) {
    const unsigned below_hi = hi >= 16 ? 0xFFFFu : (1u << hi) - 1u;
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(below_hi & ~((1u << lo) - 1u)), p);
  }
  // The lanes whose bit is set in `lanes` take p[0], p[1], ... in order (as
  // many floats as bits are read); the others are 0.
  static constexpr bool kExpandLoad = true;
  static F expand_load(unsigned lanes, const float* p) {
    return _mm512_maskz_expandloadu_ps(static_cast<__mmask16>(lanes), p);
  }

  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a * b + c
  static F fnma(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a * b
  // Like the instructions: when either operand is NaN the SECOND one is returned.
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }  // correctly rounded, as std::sqrt
  static F abs(F a) { return _mm512_abs_ps(a); }
  // |magnitude| with the sign bit of `sign`.
  static F copysign(F magnitude, F sign) {
    const __m512i s = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    return _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_andnot_si512(s, _mm512_castps_si512(magnitude)),
                        _mm512_and_si512(s, _mm512_castps_si512(sign))));
  }
  static F round(F a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static F floor(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // 2^n for integral n in [-126, 127].
  static F pow2(F n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }

  // Ordered comparisons: false when either side is NaN, as in C.
  static M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M le(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M both(M a, M b) { return static_cast<M>(a & b); }
  static F select(M m, F if_true, F if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  static M first(int64_t n) { return tail(n); }  // lanes [0, n)

  // Sums in double: each vector is widened into two 8-lane accumulators.
  using D = __m512d;
  static D dzero() { return _mm512_setzero_pd(); }
  static void accumulate(D& lo, D& hi, F v) {
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    hi = _mm512_add_pd(
        hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  static double total(D lo, D hi) {
    alignas(64) double a[8];
    _mm512_store_pd(a, _mm512_add_pd(lo, hi));
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  }
  // The largest lane, by the scalar rule `v > m ? v : m` (NaN lanes never win).
  static float max_lane(F v) {
    alignas(64) float a[16];
    _mm512_store_ps(a, v);
    float m = a[0];
    for (int k = 1; k < 16; ++k) m = a[k] > m ? a[k] : m;
    return m;
  }
  // The sum of the lanes, as a tree of vector adds (a short dependency chain).
  static float sum(F v) { return _mm512_reduce_add_ps(v); }
  // One float from memory in every lane.
  static F broadcast(const float* p) { return _mm512_set1_ps(*p); }
  // dst[k * stride + j] = lane k of rows[j], j < n: 16x16 transposes in
  // registers (missing rows zero), each output row a masked store. With
  // kResidual, residual[k * residual_stride + j] is added to each value
  // first, and with kRelu, negatives become 0 (NaN stays NaN): the epilogue
  // of a convolution, done on the transposed rows in registers instead of by
  // a pass that reads dst back. `writable` is Avx2::store_transposed's,
  // unused: AVX-512's masked stores cost what plain ones do.
  template <bool kResidual = false, bool kRelu = false>
  static void store_transposed(const F* rows, int n, float* dst, int64_t stride, int64_t /*writable*/,
                               const float* residual = nullptr, int64_t residual_stride = 0) {
    // The all-lanes maskz forms compile to the plain instructions; the plain
    // intrinsics pass GCC 12 an undefined vector it warns about.
    constexpr __mmask16 kAll = 0xFFFF;
    for (int j0 = 0; j0 < n; j0 += 16) {
      const int m = n - j0 < 16 ? n - j0 : 16;
      F r[16], t[16], u[16];
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
        const F a0 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0x88);
        const F a1 = _mm512_maskz_shuffle_f32x4(kAll, u[e], u[4 + e], 0xDD);
        const F b0 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0x88);
        const F b1 = _mm512_maskz_shuffle_f32x4(kAll, u[8 + e], u[12 + e], 0xDD);
        const int64_t at = j0 + e * stride;
        const F out[4] = {_mm512_maskz_shuffle_f32x4(kAll, a0, b0, 0x88), _mm512_maskz_shuffle_f32x4(kAll, a1, b1, 0x88),
                          _mm512_maskz_shuffle_f32x4(kAll, a0, b0, 0xDD), _mm512_maskz_shuffle_f32x4(kAll, a1, b1, 0xDD)};
        for (int i = 0; i < 4; ++i) {
          const int64_t o = at + 4 * i * stride;
          F v = out[i];
          if constexpr (kResidual) v = add(v, _mm512_maskz_loadu_ps(mask, residual + j0 + (e + 4 * i) * residual_stride));
          if constexpr (kRelu) v = select(lt(v, zero()), zero(), v);
          _mm512_mask_storeu_ps(dst + o, mask, v);
        }
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
