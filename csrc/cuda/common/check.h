// Errors from the CUDA runtime become cnnkit::Error, which the bindings turn into Python
// exceptions naming the op. Every launch is followed by check_launch: a bad configuration is
// reported by the call that made it, not by a later, unrelated one.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "cnnkit/errors.h"

namespace cnnkit::cuda {

[[noreturn]] void fail(const char* op, cudaError_t status);

inline void check(const char* op, cudaError_t status) {
  if (status != cudaSuccess) fail(op, status);
}

// After a kernel launch: reports launch errors without synchronising the stream.
inline void check_launch(const char* op) { check(op, cudaGetLastError()); }

// Grid size for n independent elements, in blocks of `block` threads, capped so that the grid
// stays within the limit of any card; kernels loop with a grid stride over the rest.
inline unsigned grid_for(long long n, unsigned block) {
  long long blocks = (n + block - 1) / block;
  const long long max_blocks = 65535LL * 8;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

}  // namespace cnnkit::cuda
