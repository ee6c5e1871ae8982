// Activations on the GPU. Each launcher takes device pointers (host pointers for the emulator,
// Where::host) and returns without synchronising; the per-element definitions are
// cpu/act/formulas.h, shared with the CPU.
#pragma once
#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda {

enum class Act { relu, leaky_relu, elu, relu6, sigmoid, tanh, softplus, hardtanh, gelu, gelu_tanh, silu };

// a, b: the activation's parameters (leaky_relu: slope; elu: alpha; softplus: beta, threshold;
// hardtanh: min, max), unused by the others.
struct ActParams {
  Act act = Act::relu;
  float a = 0.0f, b = 0.0f;
};

// y may be x (in place): each element is read before it is written, by the same thread.
void activation_forward(const ActParams& p, const float* x, float* y, int64_t n, const Where& where);
void activation_backward(const ActParams& p, const float* dy, const float* x, float* dx, int64_t n,
                         const Where& where);

// PReLU over an (outer, channels, inner) view with one weight per channel (a shared weight is
// channels = 1, the rest of each sample being `inner`).
void prelu_forward(const float* x, const float* weight, float* y, int64_t outer, int64_t channels, int64_t inner,
                   const Where& where);
// dx, and dweight[c] = sum over the channel's elements, one block per weight in a fixed order.
void prelu_backward(const float* dy, const float* x, const float* weight, float* dx, float* dweight, int64_t outer,
                    int64_t channels, int64_t inner, const Where& where);

}  // namespace cnnkit::cuda
