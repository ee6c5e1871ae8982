// SGEMM for a few rows of C (linear layers at small batch), without packing.
//
// The blocked driver packs all of op(B) once per call; with M = 1 that copy
// costs as much as the multiply, so here B is read where it lies, once:
//  - trans_b (C[i,j] = A[i,:] . B[j,:], linear forward): dot products over
//    contiguous rows of B, a group of J rows at a time against R rows of A,
//    vectorised over k with one accumulator per (row, column);
//  - !trans_b (C[i,:] += A[i,k] * B[k,:], linear input gradient, im2col):
//    rows of B streamed through an R x NV-vector block of C held in
//    registers, with A broadcast one element at a time.
// Threads split N. Each C element is summed in the same order whatever the
// thread count, so results do not depend on it.
//
// `V` supplies the vector type and its few operations (see the _avx2 and
// _avx512 files); the R/J/NV shapes come from `V` too, sized to its register
// file. Internal linkage only, no STL: see blocked_impl.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "core/parallel.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

// Rows of C per register block; larger M runs several blocks over the same
// columns, which then come from L1/L2.
constexpr int64_t kSmallRows = 4;
// Columns of C per parallel work item in the dot path (every J divides it).
constexpr int64_t kDotColumns = 8;
// Depth per pass in the axpy path: a pass's B block (KC x item width) stays
// in L2 while each row block of C streams over it.
constexpr int64_t kAxpyDepth = 256;
// Most depth per pass in the dot path: an item's B rows over one pass (8 x
// 1024 floats, 32 KB) stay in L1 while every row block of A passes over them;
// over the whole depth they would not, and each step would then read both
// operands from L2, which does not keep up with the FMAs.
constexpr int64_t kDotDepth = 1024;

// Runs fn(item0, item1) over [0, items): serially below 1 MFLOP, the same
// cut as the blocked driver (waking a thread costs more than it saves, and
// far more when the cores are oversubscribed), else over every thread.
template <class Fn>
void split_columns(int64_t items, double flops, Fn&& fn) {
  if (flops < double(1 << 20)) {
    fn(int64_t{0}, items);
  } else {
    parallel_for(items, int64_t{1} << 30, fn);
  }
}

inline float scaled(float sum, float alpha, float beta, const float* c) {
  return beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
}

// C[0..R, 0..J) = alpha * A[0..R, :] . B[0..J, :] + beta * C over K.
// A rows are contiguous (lda apart), B rows ldb apart.
template <class V, int R, int J>
void dot_tile(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float alpha,
              float beta, float* C, int64_t ldc) {
  using Vec = typename V::Vec;
  constexpr int W = V::W;
  Vec acc[R][J];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) acc[r][j] = V::zero();
  }
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    Vec b[J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) b[j] = V::load(B + j * ldb + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a = V::load(A + r * lda + k);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) acc[r][j] = V::fmadd(a, b[j], acc[r][j]);
    }
  }
  if (k < K) {
    // Masked-off lanes load as zero, so they add nothing.
    const auto mask = V::mask(K - k);
    Vec b[J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) b[j] = V::maskload(B + j * ldb + k, mask);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a = V::maskload(A + r * lda + k, mask);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) acc[r][j] = V::fmadd(a, b[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      float* c = C + r * ldc + j;
      *c = scaled(V::sum(acc[r][j]), alpha, beta, c);
    }
  }
}

// Columns [j0, j1) of an R-row block, J columns at a time, single columns at the end.
template <class V, int R>
void dot_rows(int64_t j0, int64_t j1, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float alpha, float beta, float* C, int64_t ldc) {
  constexpr int J = V::template dot_columns<R>();
  int64_t j = j0;
  for (; j + J <= j1; j += J) dot_tile<V, R, J>(K, A, lda, B + j * ldb, ldb, alpha, beta, C + j, ldc);
  for (; j < j1; ++j) dot_tile<V, R, 1>(K, A, lda, B + j * ldb, ldb, alpha, beta, C + j, ldc);
}

template <class V>
void dot_block(int64_t rows, int64_t j0, int64_t j1, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float alpha, float beta, float* C, int64_t ldc) {
  switch (rows) {
    case 1: dot_rows<V, 1>(j0, j1, K, A, lda, B, ldb, alpha, beta, C, ldc); break;
    case 2: dot_rows<V, 2>(j0, j1, K, A, lda, B, ldb, alpha, beta, C, ldc); break;
    case 3: dot_rows<V, 3>(j0, j1, K, A, lda, B, ldb, alpha, beta, C, ldc); break;
    default: dot_rows<V, 4>(j0, j1, K, A, lda, B, ldb, alpha, beta, C, ldc); break;
  }
}

// trans_b: C = alpha * op(A) B^T + beta * C. A transposed is copied into
// contiguous rows first (M x K floats: small, and read N / J times).
template <class V>
void small_m_dot(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (trans_a) {
    float* packed = thread_workspace(WorkspaceSlot::GemmPackA, static_cast<size_t>(M * K));
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t i = 0; i < M; ++i) packed[i * K + k] = A[k * lda + i];
    }
    A = packed;
    lda = K;
  }
  const int64_t items = (N + kDotColumns - 1) / kDotColumns;
  // Passes of about equal depth in whole vectors, the fewest that keep each
  // within kDotDepth; one (of depth K, perhaps 0) when K fits.
  const int64_t passes = (K + kDotDepth - 1) / kDotDepth;
  const int64_t depth = K <= kDotDepth ? K : ((K + passes - 1) / passes + V::W - 1) / V::W * V::W;
  split_columns(items, 2.0 * double(M) * double(N) * double(K), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t j0 = u * kDotColumns;
      const int64_t j1 = j0 + kDotColumns < N ? j0 + kDotColumns : N;
      for (int64_t p = 0;; p += depth) {
        const int64_t kc = K - p < depth ? K - p : depth;
        // Later passes add onto what the first one wrote.
        const float beta_p = p == 0 ? beta : 1.0f;
        for (int64_t i = 0; i < M; i += kSmallRows) {
          const int64_t rows = M - i < kSmallRows ? M - i : kSmallRows;
          dot_block<V>(rows, j0, j1, kc, A + i * lda + p, lda, B + p, ldb, alpha, beta_p, C + i * ldc, ldc);
        }
        if (p + kc >= K) break;
      }
    }
  });
}

// C[0..R, 0..NV*W) = alpha * sum_k A[r, k] B[k, :] + beta * C over kc steps.
// A[r, k] is at A[r * a_row + k * a_col] (either layout of A); B rows ldb apart.
// Masked: NV == 1 and only `cols` < W columns exist (the right edge).
template <class V, int R, int NV, bool Masked>
void axpy_tile(int64_t kc, const float* A, int64_t a_row, int64_t a_col, const float* B,
               int64_t ldb, float alpha, float beta, float* C, int64_t ldc, int64_t cols) {
  using Vec = typename V::Vec;
  constexpr int W = V::W;
  const auto mask = V::mask(Masked ? cols : W);
  Vec acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  }
  for (int64_t k = 0; k < kc; ++k) {
    Vec b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = Masked ? V::maskload(B + k * ldb, mask) : V::load(B + k * ldb + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a = V::broadcast(A + r * a_row + k * a_col);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fmadd(a, b[v], acc[r][v]);
    }
  }
  const Vec va = V::broadcast(&alpha);
  const Vec vb = V::broadcast(&beta);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + v * W;
      Vec y = V::mul(va, acc[r][v]);
      if (Masked) {
        if (beta != 0.0f) y = V::fmadd(vb, V::maskload(c, mask), y);
        V::maskstore(c, mask, y);
      } else {
        if (beta != 0.0f) y = V::fmadd(vb, V::loadu(c), y);
        V::storeu(c, y);
      }
    }
  }
}

// Columns [j0, j1) of an R-row block over kc steps: NV-vector tiles, then
// single (masked at the very end) vectors.
template <class V, int R>
void axpy_rows(int64_t j0, int64_t j1, int64_t kc, const float* A, int64_t a_row, int64_t a_col,
               const float* B, int64_t ldb, float alpha, float beta, float* C, int64_t ldc) {
  constexpr int NV = V::template axpy_vectors<R>();
  constexpr int W = V::W;
  int64_t j = j0;
  for (; j + NV * W <= j1; j += NV * W) {
    axpy_tile<V, R, NV, false>(kc, A, a_row, a_col, B + j, ldb, alpha, beta, C + j, ldc, NV * W);
  }
  for (; j + W <= j1; j += W) {
    axpy_tile<V, R, 1, false>(kc, A, a_row, a_col, B + j, ldb, alpha, beta, C + j, ldc, W);
  }
  if (j < j1) axpy_tile<V, R, 1, true>(kc, A, a_row, a_col, B + j, ldb, alpha, beta, C + j, ldc, j1 - j);
}

template <class V>
void axpy_block(int64_t rows, int64_t j0, int64_t j1, int64_t kc, const float* A, int64_t a_row,
                int64_t a_col, const float* B, int64_t ldb, float alpha, float beta, float* C,
                int64_t ldc) {
  switch (rows) {
    case 1: axpy_rows<V, 1>(j0, j1, kc, A, a_row, a_col, B, ldb, alpha, beta, C, ldc); break;
    case 2: axpy_rows<V, 2>(j0, j1, kc, A, a_row, a_col, B, ldb, alpha, beta, C, ldc); break;
    case 3: axpy_rows<V, 3>(j0, j1, kc, A, a_row, a_col, B, ldb, alpha, beta, C, ldc); break;
    default: axpy_rows<V, 4>(j0, j1, kc, A, a_row, a_col, B, ldb, alpha, beta, C, ldc); break;
  }
}

// !trans_b: C = alpha * op(A) B + beta * C. Work items are column blocks of
// V::kAxpyColumns (every NV * W divides it).
template <class V>
void small_m_axpy(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t a_row = trans_a ? 1 : lda;
  const int64_t a_col = trans_a ? lda : 1;
  constexpr int64_t width = V::kAxpyColumns;
  const int64_t items = (N + width - 1) / width;
  split_columns(items, 2.0 * double(M) * double(N) * double(K), [&](int64_t u0, int64_t u1) {
    const int64_t j_end = u1 * width < N ? u1 * width : N;
    for (int64_t p = 0; p < K; p += kAxpyDepth) {
      const int64_t kc = K - p < kAxpyDepth ? K - p : kAxpyDepth;
      // Later depth passes add onto what the first one wrote.
      const float beta_p = p == 0 ? beta : 1.0f;
      for (int64_t j0 = u0 * width; j0 < j_end; j0 += width) {
        const int64_t j1 = j0 + width < j_end ? j0 + width : j_end;
        for (int64_t i = 0; i < M; i += kSmallRows) {
          const int64_t rows = M - i < kSmallRows ? M - i : kSmallRows;
          axpy_block<V>(rows, j0, j1, kc, A + i * a_row + p * a_col, a_row, a_col, B + p * ldb,
                        ldb, alpha, beta_p, C + i * ldc, ldc);
        }
      }
    }
  });
}

template <class V>
void sgemm_small_m(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc) {
  if (trans_b) {
    small_m_dot<V>(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    small_m_axpy<V>(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

}  // namespace
}  // namespace cnnkit
