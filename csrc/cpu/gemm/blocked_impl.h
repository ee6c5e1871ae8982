// Cache-blocked SGEMM (Goto/BLIS structure): B is packed in KC x NC panels of
// NR-wide column strips, A in MC x KC blocks of MR-tall row strips, and an
// MR x NR register tile accumulates over KC. Included by one file per ISA,
// each compiled with its own flags; everything here has internal linkage so
// the linker can never mix code built for different ISAs.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/parallel.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

// KC x MC of A (~120 KiB) sits in L2; a KC x NC panel of B (~2 MiB) in L3.
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 120;
constexpr int64_t kNC = 2048;

inline float load_a(bool trans, const float* A, int64_t lda, int64_t i, int64_t k) {
  return trans ? A[k * lda + i] : A[i * lda + k];
}
inline float load_b(bool trans, const float* B, int64_t ldb, int64_t k, int64_t j) {
  return trans ? B[j * ldb + k] : B[k * ldb + j];
}

// Rows [i0, i0+mc) x depth [p0, p0+kc) of op(A) into MR-row strips, zero padded.
template <int MR>
void pack_a(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t rows = std::min<int64_t>(MR, mc - ir);
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t r = 0; r < MR; ++r) {
        dst[r] = r < rows ? load_a(trans, A, lda, i0 + ir + r, p0 + k) : 0.0f;
      }
      dst += MR;
    }
  }
}

// Depth [p0, p0+kc) x columns [j0, j0+nc) of op(B) into NR-column strips, zero padded.
template <int NR>
void pack_b(bool trans, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
            int64_t nc, float* dst) {
  const int64_t strips = (nc + NR - 1) / NR;
  parallel_for(strips, kc * NR, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t jr = s * NR;
      const int64_t cols = std::min<int64_t>(NR, nc - jr);
      float* out = dst + s * kc * NR;
      for (int64_t k = 0; k < kc; ++k) {
        if (!trans && cols == NR) {
          const float* src = B + (p0 + k) * ldb + j0 + jr;
          for (int64_t c = 0; c < NR; ++c) out[c] = src[c];
        } else {
          for (int64_t c = 0; c < NR; ++c) {
            out[c] = c < cols ? load_b(trans, B, ldb, p0 + k, j0 + jr + c) : 0.0f;
          }
        }
        out += NR;
      }
    }
  });
}

// acc = sum_k a[k] (x) b[k]; then C = alpha*acc + beta*C on the valid part.
// Written as plain loops the compiler keeps in vector registers for the
// ISA this file is built for.
template <int MR, int NR>
void micro_kernel(int64_t kc, const float* a, const float* b, float alpha, float beta, float* C,
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

template <int MR, int NR>
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
  const int64_t threads = num_threads();
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    const int64_t n_strips = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const float beta_pc = pc == 0 ? beta : 1.0f;
      float* bp = thread_workspace(WorkspaceSlot::GemmPackB, static_cast<size_t>(n_strips * kc * NR));
      pack_b<NR>(trans_b, B, ldb, pc, kc, jc, nc, bp);
      // Work units are (row block, column chunk); columns are split only when
      // there are too few row blocks to keep every thread busy (small M).
      const int64_t m_blocks = (M + kMC - 1) / kMC;
      const int64_t n_chunks =
          std::min<int64_t>(n_strips, std::max<int64_t>(1, (threads + m_blocks - 1) / m_blocks));
      parallel_for(m_blocks * n_chunks, kMC * kc * (nc / n_chunks + 1), [&](int64_t u0, int64_t u1) {
        float* ap = thread_workspace(WorkspaceSlot::GemmPackA, static_cast<size_t>(kMC * kc));
        int64_t packed_block = -1;
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t ib = u / n_chunks;
          const int64_t chunk = u % n_chunks;
          const int64_t ic = ib * kMC;
          const int64_t mc = std::min(kMC, M - ic);
          if (packed_block != ib) {
            pack_a<MR>(trans_a, A, lda, ic, mc, pc, kc, ap);
            packed_block = ib;
          }
          const int64_t s_begin = n_strips * chunk / n_chunks;
          const int64_t s_end = n_strips * (chunk + 1) / n_chunks;
          for (int64_t s = s_begin; s < s_end; ++s) {
            const int64_t jr = s * NR;
            const int64_t cols = std::min<int64_t>(NR, nc - jr);
            for (int64_t ir = 0; ir < mc; ir += MR) {
              const int64_t rows = std::min<int64_t>(MR, mc - ir);
              micro_kernel<MR, NR>(kc, ap + ir * kc, bp + s * kc * NR, alpha, beta_pc,
                                   C + (ic + ir) * ldc + jc + jr, ldc, rows, cols);
            }
          }
        }
      });
    }
  }
}

}  // namespace
}  // namespace cnnkit
