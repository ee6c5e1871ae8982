#include "cuda/common/device_exec.cuh"
#include "cuda/conv/conv.h"

namespace cnnkit::cuda::conv {

void conv2d_forward(const ConvGeom& g, ConvAlgo algo, const float* x, const float* w, const float* bias, float* y,
                    float* scratch, cudaStream_t stream) {
  DeviceExec ex{stream, "conv2d"};
  forward(ex, g, algo, x, w, bias, y, scratch);
}

}  // namespace cnnkit::cuda::conv
