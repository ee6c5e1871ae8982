// The tiled SGEMM's per-thread work, shared by every GEMM-shaped kernel of the CUDA module
// (sgemm, linear, conv2d by im2col and by implicit GEMM): C[m, n] = sum_k A(m, k) * B(n, k).
//
// Both operands are read as "row x depth" matrices (A: M x K, B: N x K), so a transpose is only a
// swap of strides and an implicit-GEMM operand is a gather function of (row, depth). A block owns
// a BM x BN tile of C; per step of BK along the depth its threads copy the two operand tiles into
// shared memory (depth-major, so the inner product reads rows contiguously), then each thread
// accumulates its TM x TN micro-tile in registers. The tiles are double-buffered: while one pair
// is multiplied, the next pair's loads are in flight in registers, and one barrier per step
// separates the two. The depth is added in the same order for every tile shape, so the result
// does not depend on which shape was chosen.
//
// Everything here is CNNKIT_HD: the GPU kernel (common/device_exec.cuh) and the host emulator
// (common/host_exec.h) run the same functions, the emulator looping over the threads of a block
// phase by phase.
#pragma once

#include <vector_types.h>

#include <cmath>
#include <cstdint>

#include "cuda/common/hd.h"

#ifdef __CUDACC__
#define CNNKIT_UNROLL _Pragma("unroll")
#else
#define CNNKIT_UNROLL
#endif

namespace cnnkit::cuda::gemm {

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  // One float4 of padding per depth row: the depth-contiguous loads write a tile column by
  // column, and the padding spreads a warp's stores over all 32 banks.
  static constexpr int LDA = BM + 4, LDB = BN + 4;
  static_assert(BM % TM == 0 && BN % TN == 0, "the micro-tiles must cover the tile");
  static_assert((BM * BK) % (4 * kThreads) == 0 && (BN * BK) % (4 * kThreads) == 0,
                "each thread copies whole float4s of both operand tiles");
  static_assert(BK % 4 == 0 && BM % 4 == 0 && BN % 4 == 0, "operand tiles are copied as float4s");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are runs of 4 (see micro_index)");
};

// 128 x 128 tiles for large products (64 accumulators a thread), 64 x 64 where the large tiles
// would leave most multiprocessors idle.
using LargeTile = TileConfig<128, 128, 8, 8, 8>;
using SmallTile = TileConfig<64, 64, 16, 4, 4>;

// Split-K chunks are multiples of this, so that every tile shape's depth steps fit a chunk.
constexpr int64_t kDepthQuantum = 16;

// The whole product: C is M x N with depth K, `batches` independent products (conv groups, a
// batched sgemm) each cut into `splits` chunks of depth `k_chunk` (splits > 1 only with a store
// that writes partial sums).
struct TileGrid {
  int64_t M = 0, N = 0, K = 0;
  int64_t batches = 1, splits = 1, k_chunk = 0;
};

// What one block computes.
struct TileJob {
  int64_t batch, split, m0, n0, k_begin, k_end;
};

template <class Cfg>
CNNKIT_HD TileJob tile_job(const TileGrid& g, int64_t bx, int64_t by, int64_t bz) {
  TileJob job;
  job.batch = bz % g.batches;
  job.split = bz / g.batches;
  job.m0 = by * Cfg::BM;
  job.n0 = bx * Cfg::BN;
  job.k_begin = job.split * g.k_chunk;
  const int64_t end = job.k_begin + g.k_chunk;
  job.k_end = end < g.K ? end : g.K;
  return job;
}

// A plain strided matrix: element (r, k) at p[r * sr + k * sk], batch z at p + z * batch_stride.
// A row-major M x K matrix is {K, 1}; its transpose read as rows of the depth is {1, M}.
struct Strided {
  const float* p = nullptr;
  int64_t sr = 0, sk = 0, batch_stride = 0;

  CNNKIT_HD Strided batch(int64_t z) const { return {p + z * batch_stride, sr, sk, batch_stride}; }
  CNNKIT_HD bool k_contiguous() const { return sk == 1; }
  CNNKIT_HD float at(int64_t r, int64_t k) const { return p[r * sr + k * sk]; }
  // Four consecutive elements along the contiguous axis from (r, k): one 16-byte load where all
  // four exist and the address is aligned, else element by element, 0 past the edges.
  CNNKIT_HD void load4(int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) const;
};

// Four consecutive elements of any operand along its contiguous axis, 0 past (rows, k_end).
template <class Op>
CNNKIT_HD void gather4(const Op& op, int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) {
  const bool along_k = op.k_contiguous();
  CNNKIT_UNROLL
  for (int j = 0; j < 4; ++j) {
    const int64_t rj = along_k ? r : r + j, kj = along_k ? k + j : k;
    v[j] = rj < rows && kj < k_end ? op.at(rj, kj) : 0.0f;
  }
}

CNNKIT_HD void Strided::load4(int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) const {
  const bool along_k = sk == 1;
  const bool inside = along_k ? (r < rows && k + 3 < k_end) : (k < k_end && r + 3 < rows);
  const float* first = p + r * sr + k * sk;
  if (inside && (along_k || sr == 1) && (reinterpret_cast<uintptr_t>(first) & 15) == 0) {
    const float4 q = *reinterpret_cast<const float4*>(first);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    return;
  }
  gather4(*this, r, k, rows, k_end, v);
}

// An operand read with rows and depth exchanged (the weight gradient reads the image columns
// of the forward pass this way).
template <class Op>
struct Transposed {
  Op inner;
  CNNKIT_HD Transposed batch(int64_t z) const { return {inner.batch(z)}; }
  CNNKIT_HD bool k_contiguous() const { return !inner.k_contiguous(); }
  CNNKIT_HD float at(int64_t r, int64_t k) const { return inner.at(k, r); }
  // Four along this operand's contiguous axis are four along the inner one's.
  CNNKIT_HD void load4(int64_t r, int64_t k, int64_t rows, int64_t k_end, float v[4]) const {
    inner.load4(k, r, k_end, rows, v);
  }
};

// Copying a ROWS x BK operand tile into shared memory, in two halves so that the next tile's
// global loads are in flight while the current one is multiplied: fetch_tile reads thread
// `tid`'s share into registers, stash_tile writes them into the tile, stored depth-major with
// leading dimension LD. Threads take consecutive float4s along the operand's contiguous axis, so
// a warp's loads are coalesced in either orientation.
template <int ROWS, int BK, int THREADS>
struct TileShare {
  static constexpr int kVectors = ROWS * BK / (4 * THREADS);
  static constexpr int kFloats = 4 * kVectors;
};

template <int ROWS, int BK, int THREADS, class Op>
CNNKIT_HD void fetch_tile(const Op& op, int64_t r0, int64_t k0, int64_t rows, int64_t k_end, int tid, float* regs) {
  const bool along_k = op.k_contiguous();
  CNNKIT_UNROLL
  for (int v = 0; v < TileShare<ROWS, BK, THREADS>::kVectors; ++v) {
    const int i = tid + v * THREADS;
    if (along_k) {
      op.load4(r0 + i / (BK / 4), k0 + (i % (BK / 4)) * 4, rows, k_end, regs + 4 * v);
    } else {
      op.load4(r0 + (i % (ROWS / 4)) * 4, k0 + i / (ROWS / 4), rows, k_end, regs + 4 * v);
    }
  }
}

template <int ROWS, int BK, int THREADS, int LD>
CNNKIT_HD void stash_tile(bool along_k, const float* regs, int tid, float* tile) {
  CNNKIT_UNROLL
  for (int v = 0; v < TileShare<ROWS, BK, THREADS>::kVectors; ++v) {
    const int i = tid + v * THREADS;
    CNNKIT_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (along_k) {
        tile[((i % (BK / 4)) * 4 + j) * LD + i / (BK / 4)] = regs[4 * v + j];
      } else {
        tile[(i / (ROWS / 4)) * LD + (i % (ROWS / 4)) * 4 + j] = regs[4 * v + j];
      }
    }
  }
}

// Which row (column) of the block's tile is entry i of a thread's micro-tile, for the thread at
// `t` along that side: the tile is cut into T/4 strips, and the thread takes the 4 entries at
// t*4 of each strip. With TM = 8 a thread's rows are t*4.. and 64 + t*4..: a warp's float4
// reads of a tile row then cover consecutive addresses (no bank conflicts), and its stores are
// 256-byte runs.
template <int TILE, int T>
CNNKIT_HD int micro_index(int t, int i) {
  return (i / 4) * (TILE * 4 / T) + t * 4 + i % 4;
}

// Thread `tid`'s micro-tile, accumulated over one BK step with fused multiply-adds (acc is
// TM x TN, row-major).
template <class Cfg>
CNNKIT_HD void multiply_tile(const float* a_tile, const float* b_tile, int tid, float* acc) {
  const int ty = tid / (Cfg::BN / Cfg::TN), tx = tid % (Cfg::BN / Cfg::TN);
  CNNKIT_UNROLL
  for (int k = 0; k < Cfg::BK; ++k) {
    float a[Cfg::TM], b[Cfg::TN];
    CNNKIT_UNROLL
    for (int i = 0; i < Cfg::TM; ++i) a[i] = a_tile[k * Cfg::LDA + micro_index<Cfg::BM, Cfg::TM>(ty, i)];
    CNNKIT_UNROLL
    for (int j = 0; j < Cfg::TN; ++j) b[j] = b_tile[k * Cfg::LDB + micro_index<Cfg::BN, Cfg::TN>(tx, j)];
    CNNKIT_UNROLL
    for (int i = 0; i < Cfg::TM; ++i) {
      CNNKIT_UNROLL
      for (int j = 0; j < Cfg::TN; ++j) acc[i * Cfg::TN + j] = fmaf(a[i], b[j], acc[i * Cfg::TN + j]);
    }
  }
}

// Thread `tid` hands its micro-tile to the store (which applies alpha, beta, a bias, or a layout).
// Both loops unroll, so that acc is indexed by constants and stays in registers.
template <class Cfg, class Store>
CNNKIT_HD void store_tile(const Store& s, const TileJob& job, const TileGrid& g, int tid, const float* acc) {
  const int ty = tid / (Cfg::BN / Cfg::TN), tx = tid % (Cfg::BN / Cfg::TN);
  CNNKIT_UNROLL
  for (int i = 0; i < Cfg::TM; ++i) {
    const int64_t m = job.m0 + micro_index<Cfg::BM, Cfg::TM>(ty, i);
    CNNKIT_UNROLL
    for (int j = 0; j < Cfg::TN; ++j) {
      const int64_t n = job.n0 + micro_index<Cfg::BN, Cfg::TN>(tx, j);
      if (m < g.M && n < g.N) s.store(job.batch, job.split, m, n, acc[i * Cfg::TN + j]);
    }
  }
}

// One thread of a block, between barriers: its registers (the next tiles' share, the
// accumulators) and its part of each phase. The GPU kernel runs the phases with a barrier after
// each; the emulator runs each phase for every thread in turn.
template <class Cfg, class A, class B>
struct TileThread {
  using ShareA = TileShare<Cfg::BM, Cfg::BK, Cfg::kThreads>;
  using ShareB = TileShare<Cfg::BN, Cfg::BK, Cfg::kThreads>;
  float a_regs[ShareA::kFloats];
  float b_regs[ShareB::kFloats];
  float acc[Cfg::TM * Cfg::TN];

  // Before the loop: zero accumulators, and the first tiles (at job.k_begin) into buffer 0.
  CNNKIT_HD void prologue(const A& a, const B& b, const TileJob& job, const TileGrid& g, int tid, float* a_tile,
                          float* b_tile) {
    CNNKIT_UNROLL
    for (int i = 0; i < Cfg::TM * Cfg::TN; ++i) acc[i] = 0.0f;
    if (job.k_begin >= job.k_end) return;
    fetch(a, b, job, g, job.k_begin, tid);
    stash(a, b, tid, a_tile, b_tile);
  }

  // The step at depth k0: start loading the tiles at k0 + BK, multiply the current ones, and put
  // the next ones into the other buffer (which every thread finished reading before the last
  // barrier).
  CNNKIT_HD void step(const A& a, const B& b, const TileJob& job, const TileGrid& g, int64_t k0, int tid,
                      const float* a_tile, const float* b_tile, float* a_next, float* b_next) {
    const bool more = k0 + Cfg::BK < job.k_end;
    if (more) fetch(a, b, job, g, k0 + Cfg::BK, tid);
    multiply_tile<Cfg>(a_tile, b_tile, tid, acc);
    if (more) stash(a, b, tid, a_next, b_next);
  }

 private:
  CNNKIT_HD void fetch(const A& a, const B& b, const TileJob& job, const TileGrid& g, int64_t k0, int tid) {
    fetch_tile<Cfg::BM, Cfg::BK, Cfg::kThreads>(a, job.m0, k0, g.M, job.k_end, tid, a_regs);
    fetch_tile<Cfg::BN, Cfg::BK, Cfg::kThreads>(b, job.n0, k0, g.N, job.k_end, tid, b_regs);
  }
  CNNKIT_HD void stash(const A& a, const B& b, int tid, float* a_tile, float* b_tile) const {
    stash_tile<Cfg::BM, Cfg::BK, Cfg::kThreads, Cfg::LDA>(a.k_contiguous(), a_regs, tid, a_tile);
    stash_tile<Cfg::BN, Cfg::BK, Cfg::kThreads, Cfg::LDB>(b.k_contiguous(), b_regs, tid, b_tile);
  }
};

// C = alpha * product + beta * C (+ bias along rows or columns), C row-major with leading
// dimension ldc, batch z at c + z * batch_stride. beta == 0 never reads C (it may hold NaN).
struct MatrixStore {
  float* c = nullptr;
  int64_t ldc = 0, batch_stride = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* bias = nullptr;
  int64_t bias_batch_stride = 0;
  bool bias_per_row = false;

  CNNKIT_HD void store(int64_t z, int64_t, int64_t m, int64_t n, float v) const {
    float* out = c + z * batch_stride + m * ldc + n;
    float r = alpha * v;
    if (beta != 0.0f) r = fmaf(beta, *out, r);
    if (bias != nullptr) r += bias[z * bias_batch_stride + (bias_per_row ? m : n)];
    *out = r;
  }
};

// Split-K partial sums: split s of batch z at scratch[((s * batches + z) * M + m) * N + n];
// SumSplits adds them in split order, so the result is the same on every run.
struct PartialStore {
  float* scratch = nullptr;
  int64_t M = 0, N = 0, batches = 1;
  CNNKIT_HD void store(int64_t z, int64_t split, int64_t m, int64_t n, float v) const {
    scratch[((split * batches + z) * M + m) * N + n] = v;
  }
};

// Element i of the batches x M x N result (row-major), summed over the splits, into out[i].
struct SumSplits {
  const float* scratch = nullptr;
  float* out = nullptr;
  int64_t count = 0, splits = 1;
  CNNKIT_HD void operator()(int64_t i) const {
    float sum = 0.0f;
    for (int64_t s = 0; s < splits; ++s) sum += scratch[s * count + i];
    out[i] = sum;
  }
};

// The plain kernel, the definition the tiled one is tested against: one thread per element of
// C, the whole depth in one loop.
template <class A, class B, class Store>
struct ReferenceProduct {
  A a;
  B b;
  Store s;
  TileGrid g;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t n = i % g.N, m = (i / g.N) % g.M, z = i / (g.N * g.M);
    const A az = a.batch(z);
    const B bz = b.batch(z);
    float acc = 0.0f;
    for (int64_t k = 0; k < g.K; ++k) acc = fmaf(az.at(m, k), bz.at(n, k), acc);
    s.store(z, 0, m, n, acc);
  }
};

}  // namespace cnnkit::cuda::gemm
