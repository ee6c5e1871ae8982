// SGEMM on the GPU: C = alpha * op(A) @ op(B) + beta * C, float32 arithmetic only (no TF32).
// The drivers here are templates over the executor (DeviceExec launches kernels, HostExec
// emulates them), so the emulator tests exactly the sequence of kernels the GPU runs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/gemm/tile.h"

namespace cnnkit::cuda::gemm {

// A product with one chunk of depth per batch (no split-K).
inline TileGrid whole(int64_t M, int64_t N, int64_t K, int64_t batches = 1) {
  TileGrid g;
  g.M = M, g.N = N, g.K = K, g.batches = batches, g.splits = 1, g.k_chunk = K;
  return g;
}

// Blocks enough to occupy every multiprocessor of a large GPU about once. A constant rather than
// the device's count, so that the tile shape and the split-K factor (and with them the summation
// order) are the same on every card.
constexpr int64_t kFullGrid = 128;

inline int64_t tiles(int64_t M, int64_t N, int64_t batches, int bm, int bn) {
  return ((M + bm - 1) / bm) * ((N + bn - 1) / bn) * batches;
}

// The tiled product with the tile shape that suits its size: 128 x 128 where both sides fill
// more than half of it and the grid is still full, else 64 x 64 (a conv layer of 64 output
// channels would leave half of each large tile idle). The result is the same with either (see
// tile.h).
template <class Exec, class A, class B, class Store>
void product(Exec& ex, const A& a, const B& b, const Store& s, const TileGrid& g) {
  if (g.M > SmallTile::BM && g.N > SmallTile::BN &&
      tiles(g.M, g.N, g.batches * g.splits, LargeTile::BM, LargeTile::BN) >= kFullGrid) {
    ex.template tiled<LargeTile>(a, b, s, g);
  } else {
    ex.template tiled<SmallTile>(a, b, s, g);
  }
}

// Operand A (M x K) of a row-major array holding op(A): A itself is M x K, or K x M if transposed.
inline Strided rows_of(const float* a, bool trans, int64_t M, int64_t K) {
  return trans ? Strided{a, 1, M, 0} : Strided{a, K, 1, 0};
}

// Operand B read as N x K (its rows are C's columns): op(B) is K x N, so B is K x N, or N x K if
// transposed.
inline Strided columns_of(const float* b, bool trans, int64_t K, int64_t N) {
  return trans ? Strided{b, K, 1, 0} : Strided{b, 1, N, 0};
}

struct SgemmArgs {
  const float* a = nullptr;
  const float* b = nullptr;
  float* c = nullptr;
  int64_t M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  float alpha = 1.0f, beta = 0.0f;
};

template <class Exec>
void sgemm(Exec& ex, const SgemmArgs& p, bool reference) {
  const Strided a = rows_of(p.a, p.trans_a, p.M, p.K);
  const Strided b = columns_of(p.b, p.trans_b, p.K, p.N);
  MatrixStore s;
  s.c = p.c, s.ldc = p.N, s.alpha = p.alpha, s.beta = p.beta;
  const TileGrid g = whole(p.M, p.N, p.K);
  if (reference) {
    ex.each(p.M * p.N, ReferenceProduct<Strided, Strided, MatrixStore>{a, b, s, g});
  } else {
    product(ex, a, b, s, g);
  }
}

// The launcher: device pointers, the caller's stream, no synchronisation.
void sgemm(const SgemmArgs& p, bool reference, cudaStream_t stream);

}  // namespace cnnkit::cuda::gemm
