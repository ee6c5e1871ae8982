// Activations on the GPU. Each launcher takes device pointers and the caller's stream and returns
// without synchronising; the per-element definitions are cpu/act/formulas.h, shared with the CPU.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace cnnkit::cuda {

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void relu_backward(const float* dy, const float* x, float* dx, int64_t n, cudaStream_t stream);

}  // namespace cnnkit::cuda
