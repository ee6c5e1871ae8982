// Blocked SGEMM for AVX-512: a 14x32 register tile (28 zmm accumulators, two
// B vectors, A broadcast straight from memory into each FMA). The same
// structure as the 6x16 AVX2 kernel, with mask registers for the column edge.
// Here the accumulators can stay an array: with 32 registers GCC keeps all 28
// in zmm through the k loop (checked in the disassembly; the AVX2 kernel needs
// named variables for that).
#include <immintrin.h>

#include <cmath>

#include "cpu/gemm/blocked_impl.h"
#include "cpu/gemm/kernels.h"
#include "cpu/gemm/pack_avx2.h"

namespace cnnkit {
namespace {

struct Avx512Kernel {
  static constexpr int MR = 14;
  static constexpr int NR = 32;
  // The B strip (KC x 32 = 32 KiB) stays in L1d (48 KiB on Zen 5), the A
  // block (MC x KC = 336 KiB) in a 1 MiB L2, the B panel (KC x NC = 4 MiB) in L3.
  static constexpr int64_t KC = 256;
  static constexpr int64_t MC = 336;
  static constexpr int64_t NC = 4096;
  // How far ahead (floats) the tiles prefetch A: a pre-packed weight matrix
  // streams from memory rather than L2, and with a few columns of B there
  // is too little work per line for the hardware prefetcher to keep ahead.
  // (Prefetches past the end of A are harmless: they never fault.)
  static constexpr int64_t kPrefetchA = 64 * MR;

  template <int W>
  static void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_copy_avx2<W>(src, ld, kc, valid, dst);
  }
  template <int W>
  static void pack_transpose(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    pack_transpose_avx2<W>(src, ld, kc, valid, dst);
  }

  // R = rows of the tile that exist, NV = 16-float column vectors that hold
  // any valid column: edge tiles skip the multiply-adds of padding.
  template <int R, int NV>
  static void tile_part(int64_t kc, const float* a, const float* b, float alpha, float beta,
                        float* C, int64_t ldc, int64_t cols) {
    __m512 acc[NV][R];
    for (int r = 0; r < R; ++r) {
      for (int v = 0; v < NV; ++v) acc[v][r] = _mm512_setzero_ps();
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + NV * 16 - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(a + kPrefetchA), _MM_HINT_T0);
      __m512 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_set1_ps(a[r]);
        for (int v = 0; v < NV; ++v) acc[v][r] = _mm512_fmadd_ps(av, bv[v], acc[v][r]);
      }
      a += MR;
      b += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha);
    const __m512 vb = _mm512_set1_ps(beta);
    // Full vectors get all-ones masks: one code path for full and edge tiles.
    __mmask16 mask[NV];
    for (int v = 0; v < NV; ++v) {
      const int64_t n = cols - 16 * v;
      mask[v] = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (n <= 0 ? 0 : (1u << n) - 1));
    }
    for (int r = 0; r < R; ++r) {
      float* c = C + r * ldc;
      for (int v = 0; v < NV; ++v) {
        __m512 y = _mm512_mul_ps(va, acc[v][r]);
        if (beta != 0.0f) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], c + 16 * v), y);
        _mm512_mask_storeu_ps(c + 16 * v, mask[v], y);
      }
    }
  }

  // A full-height tile of at most 8 columns (the edge strip of N = 196,
  // a 14x14 plane): the 14 rows in the lanes of one vector and one
  // accumulator per column, instead of tile_part's 14 accumulators of 16
  // columns, most of them padding. Even and odd k go to separate
  // accumulators, added at the end, so that a few columns still keep
  // enough multiply-adds in flight. (256 x 196 x 256, 1 thread: the edge
  // strip took 7% of the product, for 2% of its columns.)
  template <int COLS>
  static void tile_columns(int64_t kc, const float* a, const float* b, float alpha, float beta, float* C,
                           int64_t ldc) {
    constexpr __mmask16 kRows = (1u << MR) - 1;
    __m512 even[COLS], odd[COLS];
#pragma GCC unroll 8
    for (int j = 0; j < COLS; ++j) {
      even[j] = _mm512_setzero_ps();
      odd[j] = _mm512_setzero_ps();
    }
    // An odd k count starts with one step on its own: with the step after
    // the loop instead, GCC kept the accumulators in memory.
    if (kc % 2 != 0) {
      const __m512 a0 = _mm512_maskz_loadu_ps(kRows, a);
#pragma GCC unroll 8
      for (int j = 0; j < COLS; ++j) even[j] = _mm512_mul_ps(a0, _mm512_set1_ps(b[j]));
      a += MR;
      b += NR;
    }
    for (int64_t k = kc % 2; k < kc; k += 2, a += 2 * MR, b += 2 * NR) {
      _mm_prefetch(reinterpret_cast<const char*>(a + kPrefetchA), _MM_HINT_T0);
      const __m512 a0 = _mm512_maskz_loadu_ps(kRows, a), a1 = _mm512_maskz_loadu_ps(kRows, a + MR);
#pragma GCC unroll 8
      for (int j = 0; j < COLS; ++j) {
        even[j] = _mm512_fmadd_ps(a0, _mm512_set1_ps(b[j]), even[j]);
        odd[j] = _mm512_fmadd_ps(a1, _mm512_set1_ps(b[NR + j]), odd[j]);
      }
    }
    alignas(64) float t[COLS][16];
#pragma GCC unroll 8
    for (int j = 0; j < COLS; ++j) {
      _mm512_store_ps(t[j], _mm512_mul_ps(_mm512_set1_ps(alpha), _mm512_add_ps(even[j], odd[j])));
    }
    for (int r = 0; r < MR; ++r) {
      float* c = C + r * ldc;
      for (int j = 0; j < COLS; ++j) c[j] = beta != 0.0f ? std::fma(beta, c[j], t[j][r]) : t[j][r];
    }
  }

  template <int R>
  static void tile_rows(int64_t kc, const float* a, const float* b, float alpha, float beta,
                        float* C, int64_t ldc, int64_t cols) {
    if constexpr (R == MR) {
      switch (cols) {
        case 1: return tile_columns<1>(kc, a, b, alpha, beta, C, ldc);
        case 2: return tile_columns<2>(kc, a, b, alpha, beta, C, ldc);
        case 3: return tile_columns<3>(kc, a, b, alpha, beta, C, ldc);
        case 4: return tile_columns<4>(kc, a, b, alpha, beta, C, ldc);
        case 5: return tile_columns<5>(kc, a, b, alpha, beta, C, ldc);
        case 6: return tile_columns<6>(kc, a, b, alpha, beta, C, ldc);
        case 7: return tile_columns<7>(kc, a, b, alpha, beta, C, ldc);
        case 8: return tile_columns<8>(kc, a, b, alpha, beta, C, ldc);
        default: break;
      }
    }
    if (cols > 16) {
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
      case 6: tile_rows<6>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 7: tile_rows<7>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 8: tile_rows<8>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 9: tile_rows<9>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 10: tile_rows<10>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 11: tile_rows<11>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 12: tile_rows<12>(kc, a, b, alpha, beta, C, ldc, cols); break;
      case 13: tile_rows<13>(kc, a, b, alpha, beta, C, ldc, cols); break;
      default: tile_rows<14>(kc, a, b, alpha, beta, C, ldc, cols); break;
    }
  }
};

}  // namespace

void sgemm_blocked_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  sgemm_blocked<Avx512Kernel>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const PackedSgemmKernel kPackedSgemmAvx512 = {
    "blocked_avx512", Isa::Avx512, packed_a_floats<Avx512Kernel>, pack_a_blocked<Avx512Kernel>,
    sgemm_blocked_packed<Avx512Kernel>};

}  // namespace cnnkit
