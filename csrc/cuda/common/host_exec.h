// The host emulator of the CUDA module's kernels: runs the same CNNKIT_HD per-thread work as the
// GPU (common/device_exec.cuh) over the whole grid, on NumPy buffers. Blocks that share memory
// run thread by thread between barriers, in the order the barriers impose, with the shared
// tile as a local array; so the index arithmetic, bounds and tiling are tested without a GPU and
// only the launch configuration and real concurrency are left to the GPU tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/common/reduce.h"
#include "cuda/gemm/tile.h"

namespace cnnkit::cuda {

struct HostExec {
  template <class F>
  void each(int64_t n, const F& f) {
    for (int64_t i = 0; i < n; ++i) f(i);
  }

  template <class F>
  void row_sums(int64_t rows, const F& f, float* out) {
    std::vector<float> shares(kReduceThreads);
    for (int64_t row = 0; row < rows; ++row) {
      for (int tid = 0; tid < kReduceThreads; ++tid) shares[tid] = partial_row_sum(f, row, tid, kReduceThreads);
      for (int step = kReduceThreads / 2; step > 0; step /= 2) {
        for (int tid = 0; tid < step; ++tid) shares[tid] += shares[tid + step];
      }
      out[row] = shares[0];
    }
  }

  template <class Cfg, class A, class B, class Store>
  void tiled(const A& a, const B& b, const Store& s, const gemm::TileGrid& g) {
    std::vector<float> a_tiles[2] = {std::vector<float>(Cfg::BK * Cfg::LDA), std::vector<float>(Cfg::BK * Cfg::LDA)};
    std::vector<float> b_tiles[2] = {std::vector<float>(Cfg::BK * Cfg::LDB), std::vector<float>(Cfg::BK * Cfg::LDB)};
    std::vector<gemm::TileThread<Cfg, A, B>> threads(Cfg::kThreads);
    const int64_t grid_x = (g.N + Cfg::BN - 1) / Cfg::BN, grid_y = (g.M + Cfg::BM - 1) / Cfg::BM;
    for (int64_t bz = 0; bz < g.batches * g.splits; ++bz) {
      for (int64_t by = 0; by < grid_y; ++by) {
        for (int64_t bx = 0; bx < grid_x; ++bx) {
          const gemm::TileJob job = gemm::tile_job<Cfg>(g, bx, by, bz);
          const A az = a.batch(job.batch);
          const B bz_op = b.batch(job.batch);
          for (int tid = 0; tid < Cfg::kThreads; ++tid) {
            threads[tid].prologue(az, bz_op, job, g, tid, a_tiles[0].data(), b_tiles[0].data());
          }
          int buf = 0;
          for (int64_t k0 = job.k_begin; k0 < job.k_end; k0 += Cfg::BK, buf ^= 1) {
            for (int tid = 0; tid < Cfg::kThreads; ++tid) {
              threads[tid].step(az, bz_op, job, g, k0, tid, a_tiles[buf].data(), b_tiles[buf].data(),
                                a_tiles[buf ^ 1].data(), b_tiles[buf ^ 1].data());
            }
          }
          for (int tid = 0; tid < Cfg::kThreads; ++tid) gemm::store_tile<Cfg>(s, job, g, tid, threads[tid].acc);
        }
      }
    }
  }
};

}  // namespace cnnkit::cuda
