// Small-M SGEMM for AVX2 + FMA (see small_m_impl.h): 8-float vectors, tiles
// of at most 12 accumulators so that B and A values still fit in 16 ymm.
#include <immintrin.h>

#include "cpu/gemm/kernels.h"
#include "cpu/gemm/pack_avx2.h"
#include "cpu/gemm/small_m_impl.h"

namespace cnnkit {
namespace {

struct Avx2Vec {
  using Vec = __m256;
  static constexpr int W = 8;
  static constexpr int64_t kAxpyColumns = 64;

  // One row gets 8 accumulators (two FMA pipes x 4 cycles latency); more rows
  // share each B load, up to 12 accumulators.
  template <int R>
  static constexpr int dot_columns() {
    return R == 1 ? 8 : (R == 4 ? 2 : 4);
  }
  template <int R>
  static constexpr int axpy_vectors() {
    return R == 1 ? 8 : (R == 4 ? 2 : 4);
  }

  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int64_t n) { return lane_mask(n); }
  static Vec maskload(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
  static void maskstore(float* p, __m256i m, Vec v) { _mm256_maskstore_ps(p, m, v); }
  static Vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static float sum(Vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace

void sgemm_small_m_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc) {
  sgemm_small_m<Avx2Vec>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace cnnkit
