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
  // How far ahead (floats) the tiles prefetch A, as in the AVX-512 kernel:
  // pre-packed weights stream from memory. (Past A's end is harmless.)
  static constexpr int64_t kPrefetchA = 64 * MR;

  template <int W>
  static void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_copy_avx2<W>(src, ld, kc, valid, dst);
  }
  template <int W>
  static void pack_transpose(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_transpose_avx2<W>(src, ld, kc, valid, dst);
  }

  // One k step of one row: broadcast a, multiply-add into NV vectors.
  template <int NV>
  static void fma_row(const float* a, __m256 b0, __m256 b1, __m256& lo, __m256& hi) {
    const __m256 av = _mm256_broadcast_ss(a);
    lo = _mm256_fmadd_ps(av, b0, lo);
    if (NV > 1) hi = _mm256_fmadd_ps(av, b1, hi);
  }

  // R = rows of the tile that exist, NV = 8-float column vectors that hold
  // any valid column: edge tiles skip the multiply-adds of padding.
  // The accumulators are named variables, not an array: with an array GCC 12
  // at -O3 stores all twelve to the stack on every k step.
  template <int R, int NV>
  static void tile_part(int64_t kc, const float* a, const float* b, float alpha, float beta,
                        float* C, int64_t ldc, int64_t cols) {
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + NV * 8 - 1), _MM_HINT_T0);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(a + kPrefetchA), _MM_HINT_T0);
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = NV > 1 ? _mm256_load_ps(b + 8) : b0;
      fma_row<NV>(a, b0, b1, c00, c01);
      if (R > 1) fma_row<NV>(a + 1, b0, b1, c10, c11);
      if (R > 2) fma_row<NV>(a + 2, b0, b1, c20, c21);
      if (R > 3) fma_row<NV>(a + 3, b0, b1, c30, c31);
      if (R > 4) fma_row<NV>(a + 4, b0, b1, c40, c41);
      if (R > 5) fma_row<NV>(a + 5, b0, b1, c50, c51);
      a += MR;
      b += NR;
    }
    const __m256 acc[2][MR] = {{c00, c10, c20, c30, c40, c50}, {c01, c11, c21, c31, c41, c51}};
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 vb = _mm256_set1_ps(beta);
    // One loop nest for full and edge tiles: with two, GCC keeps the
    // accumulators in memory and stores them on every k step.
    const bool full = cols == NV * 8;
    __m256i mask[NV];
    for (int v = 0; v < NV; ++v) mask[v] = lane_mask(cols - 8 * v);
    for (int r = 0; r < R; ++r) {
      float* c = C + r * ldc;
      for (int v = 0; v < NV; ++v) {
        __m256 y = _mm256_mul_ps(va, acc[v][r]);
        if (full) {
          if (beta != 0.0f) y = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8 * v), y);
          _mm256_storeu_ps(c + 8 * v, y);
        } else {
          if (beta != 0.0f) y = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8 * v, mask[v]), y);
          _mm256_maskstore_ps(c + 8 * v, mask[v], y);
        }
      }
    }
  }

  template <int R>
  static void tile_rows(int64_t kc, const float* a, const float* b, float alpha, float beta,
                        float* C, int64_t ldc, int64_t cols) {
    if (cols > 8) {
      tile_part<R, 2>(kc, a, b, alpha, beta, C, ldc, cols);
    } else {
      tile_part<R, 1>(kc, a, b, alpha, beta, C, ldc, cols);
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

const PackedSgemmKernel kPackedSgemmAvx2 = {
    "blocked_avx2", Isa::Avx2, packed_a_floats<Avx2Kernel>, pack_a_blocked<Avx2Kernel>,
    sgemm_blocked_packed<Avx2Kernel>};

}  // namespace cnnkit
