#include "cuda/common/device_exec.cuh"
#include "cuda/linear/linear.h"

namespace cnnkit::cuda::linear {

void linear_forward(const LinearShape& d, const float* x, const float* w, const float* bias, float* y,
                    cudaStream_t stream) {
  DeviceExec ex{stream, "linear"};
  forward(ex, d, x, w, bias, y);
}

void linear_backward(const LinearShape& d, const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, cudaStream_t stream) {
  DeviceExec ex{stream, "linear_backward"};
  backward(ex, d, dy, x, w, dx, dw, db);
}

}  // namespace cnnkit::cuda::linear
