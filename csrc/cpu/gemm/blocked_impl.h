// Cache-blocked SGEMM driver (Goto/BLIS structure), shared by every ISA build.
//
// C is cut into one rectangle per thread; each thread then runs the classic
// loops on its rectangle with private packing buffers: a KC x NC panel of B in
// NR-wide strips (L3), an MC x KC block of A in MR-tall strips (L2), and the
// micro-kernel's MR x NR register tile accumulating over KC while its B strip
// stays in L1. Private buffers mean no barriers inside the loops; the price
// is that threads sharing a row range both pack it, which the partition
// weighs against the compute it splits.
//
// A `Kernel` supplies the tile sizes, the blocking, two packing routines and
// the micro-kernel. Included by one file per ISA, each compiled with its own
// flags; everything here has internal linkage so the linker can never mix
// code built for different ISAs (and no STL template is instantiated here).
#pragma once
#include <cstdint>

#include "core/parallel.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits `n` into the fewest chunks of at most `block` whose size is a
// multiple of `unit`, as even as possible (K = 257 becomes 129 + 128, not 256 + 1).
inline int64_t balanced_block(int64_t n, int64_t block, int64_t unit) {
  const int64_t chunks = ceil_div(n, block);
  return min64(block, ceil_div(ceil_div(n, chunks), unit) * unit);
}

// Packs op(A)[i0 .. i0+mc, p0 .. p0+kc) into MR-row strips, zero padded.
template <class Kernel>
void pack_a_block(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                  int64_t kc, float* dst) {
  constexpr int MR = Kernel::MR;
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t rows = min64(MR, mc - ir);
    if (trans) {
      Kernel::template pack_copy<MR>(A + p0 * lda + i0 + ir, lda, kc, rows, dst + ir * kc);
    } else {
      Kernel::template pack_transpose<MR>(A + (i0 + ir) * lda + p0, lda, kc, rows, dst + ir * kc);
    }
  }
}

// Packs op(B)[p0 .. p0+kc, j0 .. j0+nc) into NR-column strips, zero padded.
template <class Kernel>
void pack_b_panel(bool trans, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                  int64_t nc, float* dst) {
  constexpr int NR = Kernel::NR;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int64_t cols = min64(NR, nc - jr);
    if (trans) {
      Kernel::template pack_transpose<NR>(B + (j0 + jr) * ldb + p0, ldb, kc, cols, dst + jr * kc);
    } else {
      Kernel::template pack_copy<NR>(B + p0 * ldb + j0 + jr, ldb, kc, cols, dst + jr * kc);
    }
  }
}

// One thread's rectangle C[i0 .. i1, j0 .. j1).
template <class Kernel>
void gemm_rectangle(bool trans_a, bool trans_b, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                    int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc) {
  constexpr int MR = Kernel::MR;
  constexpr int NR = Kernel::NR;
  const int64_t kc_max = balanced_block(K, Kernel::KC, 1);
  const int64_t mc_max = balanced_block(i1 - i0, Kernel::MC, MR);
  const int64_t nc_max = balanced_block(j1 - j0, Kernel::NC, NR);
  float* ap = thread_workspace(WorkspaceSlot::GemmPackA, static_cast<size_t>(mc_max * kc_max));
  float* bp = thread_workspace(WorkspaceSlot::GemmPackB, static_cast<size_t>(nc_max * kc_max));
  for (int64_t jc = j0; jc < j1; jc += nc_max) {
    const int64_t nc = min64(nc_max, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = min64(kc_max, K - pc);
      // Later depth blocks add onto what the first one wrote.
      const float beta_pc = pc == 0 ? beta : 1.0f;
      pack_b_panel<Kernel>(trans_b, B, ldb, pc, kc, jc, nc, bp);
      for (int64_t ic = i0; ic < i1; ic += mc_max) {
        const int64_t mc = min64(mc_max, i1 - ic);
        pack_a_block<Kernel>(trans_a, A, lda, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t cols = min64(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            Kernel::tile(kc, ap + ir * kc, bp + jr * kc, alpha, beta_pc,
                         C + (ic + ir) * ldc + jc + jr, ldc, min64(MR, mc - ir), cols);
          }
        }
      }
    }
  }
}

template <class Kernel>
void sgemm_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    }
    return;
  }
  constexpr int MR = Kernel::MR;
  constexpr int NR = Kernel::NR;
  const int64_t m_tiles = ceil_div(M, MR);
  const int64_t n_tiles = ceil_div(N, NR);
  // Below ~1 MFLOP per thread, waking a thread costs more than it saves.
  // (double: the product of three int64 sizes may not fit in int64.)
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int64_t threads =
      flops < 1e15 ? min64(num_threads(), 1 + static_cast<int64_t>(flops / (1 << 20))) : num_threads();
  // Choose the tm x tn grid of rectangles (tm * tn <= threads, each at least
  // one tile) that minimises one thread's cost: its padded multiply-adds (64
  // lanes per cycle) plus packing its rows of A and columns of B (~8 floats
  // per cycle).
  int64_t tm = 1;
  int64_t tn = 1;
  int64_t best = -1;
  for (int64_t cm = 1; cm <= min64(threads, m_tiles); ++cm) {
    for (int64_t cn = 1; cn <= min64(threads / cm, n_tiles); ++cn) {
      const int64_t rows = ceil_div(m_tiles, cm) * MR;
      const int64_t cols = ceil_div(n_tiles, cn) * NR;
      const int64_t cost = rows * cols + 8 * (rows + cols);
      if (best < 0 || cost < best) {
        best = cost;
        tm = cm;
        tn = cn;
      }
    }
  }
  // The thread count was settled above, so the work estimate is set high
  // enough that parallel_for does not second-guess it.
  parallel_for(tm * tn, int64_t{1} << 30, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bi = u / tn;
      const int64_t bj = u % tn;
      const int64_t i0 = min64(M, m_tiles * bi / tm * MR);
      const int64_t i1 = min64(M, m_tiles * (bi + 1) / tm * MR);
      const int64_t j0 = min64(N, n_tiles * bj / tn * NR);
      const int64_t j1 = min64(N, n_tiles * (bj + 1) / tn * NR);
      if (i0 < i1 && j0 < j1) {
        gemm_rectangle<Kernel>(trans_a, trans_b, i0, i1, j0, j1, K, alpha, A, lda, B, ldb, beta,
                               C, ldc);
      }
    }
  });
}

// The portable kernel: plain loops that the compiler vectorises for whatever
// the including file is built for. Used by the scalar build.
template <int MR_, int NR_>
struct GenericKernel {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr int64_t MC = 120;
  static constexpr int64_t KC = 256;
  static constexpr int64_t NC = 2048;

  // dst[k * W + c] = src[k * ld + c] for c < valid, zero beyond.
  template <int W>
  static void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t c = 0; c < W; ++c) dst[k * W + c] = c < valid ? src[k * ld + c] : 0.0f;
    }
  }

  // dst[k * W + c] = src[c * ld + k] for c < valid, zero beyond.
  template <int W>
  static void pack_transpose(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t c = 0; c < W; ++c) dst[k * W + c] = c < valid ? src[c * ld + k] : 0.0f;
    }
  }

  // acc = sum_k a[k] (x) b[k]; then C = alpha*acc + beta*C on the valid part.
  static void tile(int64_t kc, const float* a, const float* b, float alpha, float beta, float* C,
                   int64_t ldc, int64_t rows, int64_t cols) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int r = 0; r < MR; ++r) {
        const float av = a[r];
        for (int c = 0; c < NR; ++c) acc[r][c] += av * b[c];
      }
      a += MR;
      b += NR;
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* crow = C + r * ldc;
      if (beta == 0.0f) {
        for (int64_t c = 0; c < cols; ++c) crow[c] = alpha * acc[r][c];
      } else {
        for (int64_t c = 0; c < cols; ++c) crow[c] = alpha * acc[r][c] + beta * crow[c];
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
