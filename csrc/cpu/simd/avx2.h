// 8-lane float vectors for AVX2 + FMA: the operations the vector math and the
// kernels in vmath.h are written in. Include only from *_avx2.cpp files; all of
// it has internal linkage, so no AVX2 code can leak into a baseline file.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace cnnkit {
namespace {

struct Avx2 {
  using F = __m256;
  using M = __m256;  // lane masks: all ones or all zeros per lane
  static constexpr int64_t kWidth = 8;
  static constexpr int kRegisters = 16;  // ymm0-15

  static F set1(float v) { return _mm256_set1_ps(v); }
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  // Lanes [0, n) with 0 < n < kWidth; the others read as 0 and are never written.
  static __m256i tail(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load_partial(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail(n)); }
  static void store_partial(float* p, F v, int64_t n) { _mm256_maskstore_ps(p, tail(n), v); }
  static constexpr bool kExpandLoad = false;  // no expanding load (Avx512::expand_load)
  // Lane l = p[l] for lo <= l < hi (0 <= lo <= hi <= kWidth), 0 elsewhere; the
  // other lanes' addresses are never read (p may point before an array).
  static F load_lanes(const float* p, int64_t lo, int64_t hi) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), lanes),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lanes));
    return _mm256_maskload_ps(p, in);
  }

  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }    // a * b + c
  static F fnma(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a * b
  // Like the instructions: when either operand is NaN the SECOND one is returned.
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }  // correctly rounded, as std::sqrt
  static F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  // |magnitude| with the sign bit of `sign`.
  static F copysign(F magnitude, F sign) {
    const F s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, magnitude), _mm256_and_ps(s, sign));
  }
  static F round(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F floor(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // 2^n for integral n in [-126, 127].
  static F pow2(F n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }

  // Ordered comparisons: false when either side is NaN, as in C.
  static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M le(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static M both(M a, M b) { return _mm256_and_ps(a, b); }
  static F select(M m, F if_true, F if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  static M first(int64_t n) { return _mm256_castsi256_ps(tail(n)); }  // lanes [0, n)

  // Sums in double: each vector is widened into two 4-lane accumulators.
  using D = __m256d;
  static D dzero() { return _mm256_setzero_pd(); }
  static void accumulate(D& lo, D& hi, F v) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static double total(D lo, D hi) {
    alignas(32) double a[4];
    _mm256_store_pd(a, _mm256_add_pd(lo, hi));
    return (a[0] + a[1]) + (a[2] + a[3]);
  }
  // The largest lane, by the scalar rule `v > m ? v : m` (NaN lanes never win).
  static float max_lane(F v) {
    alignas(32) float a[8];
    _mm256_store_ps(a, v);
    float m = a[0];
    for (int k = 1; k < 8; ++k) m = a[k] > m ? a[k] : m;
    return m;
  }
  // The sum of the lanes, as a tree of vector adds (a short dependency chain).
  static float sum(F v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
  }
  // One float from memory in every lane.
  static F broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  // p[kOffset] broadcast where it stands: the compiler may neither merge it
  // with another broadcast of the same address nor move it ahead of its turn
  // (plan_direct_tile_taps). The asm takes the address in a register, not as
  // a memory operand, so that no local array is kept in memory for it to read.
  template <int kOffset>
  static F broadcast_in_place(const float* p) {
    F v;
    asm volatile("vbroadcastss %c2(%1), %0" : "=x"(v) : "r"(p), "i"(kOffset * sizeof(float)));
    return v;
  }
  // dst[k * stride + j] = lane k of rows[j], j < n: 8x8 transposes in
  // registers (missing rows zero), each output row one store; the residual
  // and relu as Avx512::store_transposed's. `writable` (at least n) is how
  // many floats of each output row from dst the caller lets it write: a
  // group of 8 rows that ends within them is stored whole (the missing
  // rows' lanes as zeros, for the caller to overwrite later), other partial
  // groups by a masked store, which AMD's cores run as microcode (several
  // times a plain store's cost).
  template <bool kResidual = false, bool kRelu = false>
  static void store_transposed(const F* rows, int n, float* dst, int64_t stride, int64_t writable,
                               const float* residual = nullptr, int64_t residual_stride = 0) {
    for (int j0 = 0; j0 < n; j0 += 8) {
      const int m = n - j0 < 8 ? n - j0 : 8;
      F r[8], t[8], u[8];
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
      const bool whole = j0 + 8 <= writable;
      for (int e = 0; e < 4; ++e) {
        const int64_t at = j0 + e * stride;
        const F out[2] = {_mm256_permute2f128_ps(u[e], u[4 + e], 0x20), _mm256_permute2f128_ps(u[e], u[4 + e], 0x31)};
        for (int i = 0; i < 2; ++i) {
          const int64_t o = at + 4 * i * stride;
          F v = out[i];
          if constexpr (kResidual) v = add(v, _mm256_maskload_ps(residual + j0 + (e + 4 * i) * residual_stride, mask));
          if constexpr (kRelu) v = select(lt(v, zero()), zero(), v);
          if (whole) {
            _mm256_storeu_ps(dst + o, v);
          } else {
            _mm256_maskstore_ps(dst + o, mask, v);
          }
        }
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
