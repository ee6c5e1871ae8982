// Pooling 16 outputs wide with AVX-512; the algorithm is in vector_impl.h, the
// windows at the borders and max backward come from direct_impl.h.
#include "cpu/simd/avx512.h"
#include "cpu/pool/direct_impl.h"
#include "cpu/pool/vector_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {
namespace {

// The lane operations pooling needs beyond simd/avx512.h: strided loads and
// 32-bit index lanes.
struct PoolAvx512 : Avx512 {
  using I = __m512i;

  // The even lanes of a then of b: a0 a2 ... a14 b0 b2 ... b14.
  static F even_lanes(F a, F b) {
    const __m512i evens =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, evens, b);
  }
  // The even and the odd lanes of a then b, both in the order a0 a2 b0 b2 a4 a6 b4 b6 ...
  // (shuffles within 128-bit lanes); order_pairs puts a vector in that order back.
  static void split_pairs(F a, F b, F& even, F& odd) {
    even = _mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    odd = _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  }
  static F order_pairs(F v) {
    const __m512i order = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm512_permutexvar_ps(order, v);
  }
  // p[l * stride] in lanes l < n, 0 in the others (which read nothing).
  static F gather(const float* p, int64_t stride, int64_t n) {
    const __m512i lanes = lane_index(0, stride);
    if (n == kWidth) return _mm512_i32gather_ps(lanes, p, 4);
    return _mm512_mask_i32gather_ps(zero(), tail(n), lanes, p, 4);
  }
  // Lanes a0 b0 a1 b1 ... a15 b15 at p[0..32).
  static void store_interleaved(float* p, F a, F b) {
    const __m512i lo =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    store(p, _mm512_permutex2var_ps(a, lo, b));
    store(p + 16, _mm512_permutex2var_ps(a, hi, b));
  }
  static M is_nan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static M either(M a, M b) { return static_cast<M>(a | b); }

  static I iset1(int64_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
  static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  // first + l * step in lane l.
  static I lane_index(int64_t first, int64_t step) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return iadd(iset1(first), _mm512_mullo_epi32(iset1(step), lanes));
  }
  static I iselect(M m, I if_true, I if_false) { return _mm512_mask_blend_epi32(m, if_false, if_true); }
  static void store_index(int64_t* p, I v) {
    _mm512_storeu_si512(p, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
    _mm512_storeu_si512(p + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
  }
  static void store_index_partial(int64_t* p, I v, int64_t n) {
    const __mmask16 m = tail(n);
    _mm512_mask_storeu_epi64(p, static_cast<__mmask8>(m),
                             _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
    _mm512_mask_storeu_epi64(p + 8, static_cast<__mmask8>(m >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
  }
};

}  // namespace

const PoolKernels pool_vector_avx512 = {vector_max_forward<PoolAvx512>, max_backward,
                                        vector_avg_forward<PoolAvx512>,
                                        vector_avg_backward<PoolAvx512>};

}  // namespace cnnkit
