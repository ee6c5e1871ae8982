// Where a launcher runs a kernel's work: on the GPU, queued on the caller's stream, or (host)
// the same CNNKIT_HD per-thread work over the whole grid on the CPU, in a fixed thread order.
// The host path is the emulator: it lets the index arithmetic, bounds and reduction order be
// tested against the float64 oracle on a machine without a GPU.
#pragma once
#include <cuda_runtime_api.h>

namespace cnnkit::cuda {

struct Where {
  bool host = false;
  cudaStream_t stream = nullptr;
};

}  // namespace cnnkit::cuda
