// Elementwise activations and PReLU, forward and backward, on float32 buffers.
#pragma once
#include <cstdint>

namespace cnnkit {

enum class Activation {
  Relu, LeakyRelu, Elu, Relu6, Sigmoid, Tanh, Softplus, Hardtanh, Gelu, GeluTanh, Silu
};

// `alpha` is negative_slope for LeakyRelu and alpha for Elu; `beta` and
// `threshold` belong to Softplus (linear where beta * x > threshold);
// `min_val` <= `max_val` are Hardtanh's bounds. Unused fields are ignored.
// Semantics, kinks and NaN handling follow PyTorch; every
// function is finite for finite input however large.
struct ActParams {
  Activation kind = Activation::Relu;
  float alpha = 0.0f;
  float beta = 1.0f;
  float threshold = 20.0f;
  float min_val = -1.0f;
  float max_val = 1.0f;
};

// Parses "relu", "leaky_relu", "elu", "relu6", "sigmoid", "tanh", "softplus",
// "hardtanh", "gelu" (exact, erf), "gelu_tanh" (tanh approximation), "silu";
// Value error otherwise.
Activation parse_activation(const char* name);
// Value error for a Softplus beta of 0, Hardtanh bounds out of order or NaN,
// or any non-finite parameter.
void validate(const ActParams& p);

// y[i] = f(x[i]) for i < n; y may alias x.
void activation_forward(const ActParams& p, const float* x, float* y, int64_t n);
// dx[i] = dy[i] * f'(x[i]); takes the forward INPUT x. dx may alias dy.
void activation_backward(const ActParams& p, const float* dy, const float* x, float* dx,
                         int64_t n);

// out[i] = a[i] + b[i], then with relu max(., 0) by relu's formula (NaN kept):
// a residual connection and the ReLU after it in one pass. out may alias a or b.
void elementwise_add(const float* a, const float* b, float* out, int64_t n, bool relu);

// Input viewed as [outer, channels, inner] (channels = 1 below 2-D input);
// weight has `channels` entries, or one entry shared by all when weight_count == 1.
struct PreluShape {
  int64_t outer = 0;
  int64_t channels = 1;
  int64_t inner = 0;
  int64_t weight_count = 1;
};
void prelu_forward(const PreluShape& s, const float* x, const float* weight, float* y);
// dx = dy where x > 0 else weight * dy; dweight = sum of dy * x where x <= 0
// (weight_count entries, overwritten).
void prelu_backward(const PreluShape& s, const float* dy, const float* x, const float* weight,
                    float* dx, float* dweight);

// The serial loops that define the ops above; kept for tests.
void activation_forward_reference(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_reference(const ActParams& p, const float* dy, const float* x,
                                   float* dx, int64_t n);
void elementwise_add_reference(const float* a, const float* b, float* out, int64_t n, bool relu);
void prelu_forward_reference(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_reference(const PreluShape& s, const float* dy, const float* x,
                              const float* weight, float* dx, float* dweight);

// Name of the implementation activation_forward would use now.
const char* activation_implementation(const ActParams& p);

}  // namespace cnnkit
