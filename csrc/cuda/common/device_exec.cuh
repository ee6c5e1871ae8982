// Launches the CNNKIT_HD per-thread work of the CUDA module's kernels on the GPU: the same
// interface as the host emulator (common/host_exec.h), so the drivers that sequence an op's
// kernels (conv/conv.h, gemm/gemm.h, ...) are written once for both. Every launch goes on the
// caller's stream and is checked without synchronising.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cnnkit/errors.h"
#include "cuda/common/check.h"
#include "cuda/common/reduce.h"
#include "cuda/gemm/tile.h"

namespace cnnkit::cuda {

namespace device_kernels {

template <class F>
__global__ void each(F f, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    f(i);
  }
}

template <class F>
__global__ void __launch_bounds__(kReduceThreads) row_sums(F f, float* out) {
  __shared__ float shares[kReduceThreads];
  const int tid = threadIdx.x;
  shares[tid] = partial_row_sum(f, blockIdx.x, tid, kReduceThreads);
  __syncthreads();
  for (int step = kReduceThreads / 2; step > 0; step /= 2) {
    if (tid < step) shares[tid] += shares[tid + step];
    __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = shares[0];
}

// Two blocks per multiprocessor: caps the 128 x 128 tile's registers at 128 a thread.
template <class Cfg, class A, class B, class Store>
__global__ void __launch_bounds__(Cfg::kThreads, 2) tiled(A a, B b, Store s, gemm::TileGrid g) {
  __shared__ __align__(16) float a_tiles[2][Cfg::BK * Cfg::LDA];
  __shared__ __align__(16) float b_tiles[2][Cfg::BK * Cfg::LDB];
  const gemm::TileJob job = gemm::tile_job<Cfg>(g, blockIdx.x, blockIdx.y, blockIdx.z);
  const A az = a.batch(job.batch);
  const B bz = b.batch(job.batch);
  gemm::TileThread<Cfg, A, B> t;
  t.prologue(az, bz, job, g, threadIdx.x, a_tiles[0], b_tiles[0]);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = job.k_begin; k0 < job.k_end; k0 += Cfg::BK, buf ^= 1) {
    t.step(az, bz, job, g, k0, threadIdx.x, a_tiles[buf], b_tiles[buf], a_tiles[buf ^ 1], b_tiles[buf ^ 1]);
    __syncthreads();
  }
  gemm::store_tile<Cfg>(s, job, g, threadIdx.x, t.acc);
}

}  // namespace device_kernels

struct DeviceExec {
  cudaStream_t stream;
  const char* op;

  template <class F>
  void each(int64_t n, const F& f) {
    if (n == 0) return;
    constexpr unsigned kBlock = 256;
    device_kernels::each<<<grid_for(n, kBlock), kBlock, 0, stream>>>(f, n);
    check_launch(op);
  }

  template <class F>
  void row_sums(int64_t rows, const F& f, float* out) {
    if (rows == 0) return;
    CNNKIT_CHECK(rows <= 0x7fffffff, ErrorKind::Value, std::string(op) + ": too many rows to reduce");
    device_kernels::row_sums<<<unsigned(rows), kReduceThreads, 0, stream>>>(f, out);
    check_launch(op);
  }

  template <class Cfg, class A, class B, class Store>
  void tiled(const A& a, const B& b, const Store& s, const gemm::TileGrid& g) {
    if (g.M == 0 || g.N == 0 || g.batches == 0) return;
    const int64_t x = (g.N + Cfg::BN - 1) / Cfg::BN, y = (g.M + Cfg::BM - 1) / Cfg::BM, z = g.batches * g.splits;
    CNNKIT_CHECK(x <= 0x7fffffff && y <= 65535 && z <= 65535, ErrorKind::Value,
                 std::string(op) + ": the product is too large for one grid (" + std::to_string(g.M) + " x " +
                     std::to_string(g.N) + ", " + std::to_string(z) + " batches)");
    device_kernels::tiled<Cfg><<<dim3(unsigned(x), unsigned(y), unsigned(z)), Cfg::kThreads, 0, stream>>>(a, b, s, g);
    check_launch(op);
  }
};

}  // namespace cnnkit::cuda
