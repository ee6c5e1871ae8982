// Pooling 8 outputs wide with AVX2; the algorithm is in vector_impl.h, the
// windows at the borders and max backward come from direct_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/pool/direct_impl.h"
#include "cpu/pool/vector_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {
namespace {

// The lane operations pooling needs beyond simd/avx2.h: strided loads and
// 32-bit index lanes.
struct PoolAvx2 : Avx2 {
  using I = __m256i;

  // The even lanes of a then of b: a0 a2 a4 a6 b0 b2 b4 b6.
  static F even_lanes(F a, F b) {
    const F evens = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // The even and the odd lanes of a then b, both in the order a0 a2 b0 b2 a4 a6 b4 b6
  // (shuffles within 128-bit halves); order_pairs puts a vector in that order back.
  static void split_pairs(F a, F b, F& even, F& odd) {
    even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  }
  static F order_pairs(F v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // p[l * stride] in lanes l < n, 0 in the others (which read nothing).
  static F gather(const float* p, int64_t stride, int64_t n) {
    const __m256i lanes = lane_index(0, stride);
    if (n == kWidth) return _mm256_i32gather_ps(p, lanes, 4);
    return _mm256_mask_i32gather_ps(zero(), p, lanes, first(n), 4);
  }
  // Lanes a0 b0 a1 b1 ... a7 b7 at p[0..16).
  static void store_interleaved(float* p, F a, F b) {
    const F lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    store(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    store(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  static M is_nan(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static M either(M a, M b) { return _mm256_or_ps(a, b); }

  static I iset1(int64_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  // first + l * step in lane l.
  static I lane_index(int64_t first, int64_t step) {
    return iadd(iset1(first), _mm256_mullo_epi32(iset1(step), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static I iselect(M m, I if_true, I if_false) {
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(if_false), _mm256_castsi256_ps(if_true), m));
  }
  static void store_index(int64_t* p, I v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
  }
  static void store_index_partial(int64_t* p, I v, int64_t n) {
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
    for (int64_t l = 0; l < n; ++l) p[l] = lanes[l];
  }
};

}  // namespace

const PoolKernels pool_vector_avx2 = {vector_max_forward<PoolAvx2>, max_backward,
                                      vector_avg_forward<PoolAvx2>, vector_avg_backward<PoolAvx2>};

}  // namespace cnnkit
