#include "cuda/common/device_exec.cuh"
#include "cuda/conv/conv.h"

namespace cnnkit::cuda::conv {

void conv2d_backward(const ConvGeom& g, ConvAlgo algo, const float* dy, const float* x, const float* w, float* dx,
                     float* dw, float* db, float* scratch, cudaStream_t stream) {
  DeviceExec ex{stream, "conv2d_backward"};
  backward(ex, g, algo, dy, x, w, dx, dw, db, scratch);
}

}  // namespace cnnkit::cuda::conv
