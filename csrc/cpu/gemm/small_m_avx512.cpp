// Small-M SGEMM for AVX-512 (see small_m_impl.h): the AVX2 file's sibling
// with 16-float vectors, mask registers for the edges, and tiles of up to 24
// accumulators for the 32 zmm registers.
#include <immintrin.h>

#include "cpu/gemm/kernels.h"
#include "cpu/gemm/small_m_impl.h"

namespace cnnkit {
namespace {

struct Avx512Vec {
  using Vec = __m512;
  static constexpr int W = 16;
  static constexpr int64_t kAxpyColumns = 128;

  // One row gets 8 accumulators (two FMA pipes x 4 cycles latency); more rows
  // share each B load, up to 24 accumulators.
  template <int R>
  static constexpr int dot_columns() {
    return R == 4 ? 4 : 8;
  }
  template <int R>
  static constexpr int axpy_vectors() {
    return R == 4 ? 4 : 8;
  }

  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (n <= 0 ? 0 : (1u << n) - 1));
  }
  static Vec maskload(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static void maskstore(float* p, __mmask16 m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  static Vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  // Not _mm512_reduce_add_ps nor the unmasked lane shuffles: GCC 12 warns
  // about the undefined operand inside those intrinsics; the maskz forms have none.
  static float sum(Vec v) {
    constexpr __mmask16 all = 0xFFFF;
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(all, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(all, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(all, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(all, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(v);
  }
};

}  // namespace

void sgemm_small_m_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  sgemm_small_m<Avx512Vec>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace cnnkit
