#include "cpu/act/formulas.h"
#include "cuda/act/act.h"
#include "cuda/common/check.h"

namespace cnnkit::cuda {

namespace {

constexpr unsigned kBlock = 256;

__global__ void relu_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = act::relu(x[i]);
  }
}

__global__ void relu_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                     float* __restrict__ dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dx[i] = act::relu_grad(dy[i], x[i]);
  }
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(x, y, n);
  check_launch("relu");
}

void relu_backward(const float* dy, const float* x, float* dx, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(dy, x, dx, n);
  check_launch("relu_backward");
}

}  // namespace cnnkit::cuda
