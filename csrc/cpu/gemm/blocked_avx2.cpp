// Blocked SGEMM for AVX2 + FMA: a 6x16 register tile (12 ymm accumulators,
// two B vectors, one broadcast of A per row; 12 FMAs per 8 loads keeps both
// FMA pipes of Zen 3 / Haswell busy).
#include <immintrin.h>

#include "cpu/gemm/blocked_impl.h"
#include "cpu/gemm/kernels.h"
#include "cpu/gemm/pack_avx2.h"

namespace cnnkit {
namespace {

struct Avx2Kernel {
  static constexpr int MR = 6;
  static constexpr int NR = 16;
  // The B strip (KC x 16 = 16 KiB) stays in a 32 KiB L1d, the A block
  // (MC x KC = 144 KiB) in a 512 KiB L2, the B panel (KC x NC = 4 MiB) in L3.
  static constexpr int64_t KC = 256;
  static constexpr int64_t MC = 144;
  static constexpr int64_t NC = 4096;

  template <int W>
  static void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_copy_avx2<W>(src, ld, kc, valid, dst);
  }
  template <int W>
  static void pack_transpose(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_transpose_avx2<W>(src, ld, kc, valid, dst);
  }

  // R = rows of the tile that exist: the bottom edge computes only those.
  template <int R>
  static void tile_rows(int64_t kc, const float* a, const float* b, float alpha, float beta,
                        float* C, int64_t ldc, int64_t cols) {
    __m256 acc0[R];
    __m256 acc1[R];
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm256_setzero_ps();
      acc1[r] = _mm256_setzero_ps();
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 15), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r);
        acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
      }
      a += MR;
      b += NR;
    }
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 vb = _mm256_set1_ps(beta);
    if (cols == NR) {
      for (int r = 0; r < R; ++r) {
        float* c = C + r * ldc;
        if (beta == 0.0f) {
          _mm256_storeu_ps(c, _mm256_mul_ps(va, acc0[r]));
          _mm256_storeu_ps(c + 8, _mm256_mul_ps(va, acc1[r]));
        } else {
          _mm256_storeu_ps(c, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), _mm256_mul_ps(va, acc0[r])));
          _mm256_storeu_ps(c + 8,
                           _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), _mm256_mul_ps(va, acc1[r])));
        }
      }
      return;
    }
    const __m256i m0 = lane_mask(cols);
    const __m256i m1 = lane_mask(cols - 8);
    for (int r = 0; r < R; ++r) {
      float* c = C + r * ldc;
      __m256 y0 = _mm256_mul_ps(va, acc0[r]);
      __m256 y1 = _mm256_mul_ps(va, acc1[r]);
      if (beta != 0.0f) {
        y0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), y0);
        y1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), y1);
      }
      _mm256_maskstore_ps(c, m0, y0);
      _mm256_maskstore_ps(c + 8, m1, y1);
    }
  }

  static void tile(int64_t kc, const float* a, const float* b, float alpha, float beta, float* C,
                   int64_t ldc, int64_t rows, int64_t cols) {
    switch (rows) {
      case 1: tile_rows<1>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 2: tile_rows<2>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 3: tile_rows<3>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 4: tile_rows<4>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 5: tile_rows<5>(kc, a, b, alpha, beta, C, ldc, cols); break;
      default: tile_rows<6>(kc, a, b, alpha, beta, C, ldc, cols); break;
    }
  }
};

}  // namespace

void sgemm_blocked_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc) {
  sgemm_blocked<Avx2Kernel>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace cnnkit
