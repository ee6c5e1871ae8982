#include "cuda/common/device_exec.cuh"
#include "cuda/gemm/gemm.h"

namespace cnnkit::cuda::gemm {

void sgemm(const SgemmArgs& p, bool reference, cudaStream_t stream) {
  DeviceExec ex{stream, "sgemm"};
  sgemm(ex, p, reference);
}

}  // namespace cnnkit::cuda::gemm
