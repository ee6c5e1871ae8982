// The definition of the activations: one element at a time, in order, on the calling thread.
#include "cnnkit/act.h"
#include "cnnkit/errors.h"
#include "cpu/act/formulas.h"

namespace cnnkit {

namespace {

float forward_one(const ActParams& p, float x) {
  switch (p.kind) {
    case Activation::Relu: return act::relu(x);
    case Activation::LeakyRelu: return act::leaky_relu(x, p.alpha);
    case Activation::Elu: return act::elu(x, p.alpha);
    case Activation::Relu6: return act::relu6(x);
    case Activation::Sigmoid: return act::sigmoid(x);
    case Activation::Tanh: return act::tanh(x);
    case Activation::Softplus: return act::softplus(x, p.beta, p.threshold);
    case Activation::Hardtanh: return act::hardtanh(x, p.min_val, p.max_val);
    case Activation::Gelu: return act::gelu(x);
    case Activation::GeluTanh: return act::gelu_tanh(x);
    case Activation::Silu: return act::silu(x);
  }
  fail(ErrorKind::Value, "unknown activation");
}

float backward_one(const ActParams& p, float dy, float x) {
  switch (p.kind) {
    case Activation::Relu: return act::relu_grad(dy, x);
    case Activation::LeakyRelu: return act::leaky_relu_grad(dy, x, p.alpha);
    case Activation::Elu: return act::elu_grad(dy, x, p.alpha);
    case Activation::Relu6: return act::relu6_grad(dy, x);
    case Activation::Sigmoid: return act::sigmoid_grad(dy, x);
    case Activation::Tanh: return act::tanh_grad(dy, x);
    case Activation::Softplus: return act::softplus_grad(dy, x, p.beta, p.threshold);
    case Activation::Hardtanh: return act::hardtanh_grad(dy, x, p.min_val, p.max_val);
    case Activation::Gelu: return act::gelu_grad(dy, x);
    case Activation::GeluTanh: return act::gelu_tanh_grad(dy, x);
    case Activation::Silu: return act::silu_grad(dy, x);
  }
  fail(ErrorKind::Value, "unknown activation");
}

}  // namespace

void activation_forward_reference(const ActParams& p, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = forward_one(p, x[i]);
}

void activation_backward_reference(const ActParams& p, const float* dy, const float* x,
                                   float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = backward_one(p, dy[i], x[i]);
}

void elementwise_add_reference(const float* a, const float* b, float* out, int64_t n, bool relu) {
  for (int64_t i = 0; i < n; ++i) out[i] = relu ? act::relu(a[i] + b[i]) : a[i] + b[i];
}

void prelu_forward_reference(const PreluShape& s, const float* x, const float* weight, float* y) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t c = 0; c < s.channels; ++c) {
      const float w = weight[s.weight_count == 1 ? 0 : c];
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t at = (o * s.channels + c) * s.inner + i;
        y[at] = act::prelu(x[at], w);
      }
    }
  }
}

void prelu_backward_reference(const PreluShape& s, const float* dy, const float* x,
                              const float* weight, float* dx, float* dweight) {
  for (int64_t k = 0; k < s.weight_count; ++k) dweight[k] = 0.0f;
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t c = 0; c < s.channels; ++c) {
      const int64_t k = s.weight_count == 1 ? 0 : c;
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t at = (o * s.channels + c) * s.inner + i;
        dx[at] = act::prelu_grad(dy[at], x[at], weight[k]);
        dweight[k] += act::prelu_weight_grad(dy[at], x[at]);
      }
    }
  }
}

}  // namespace cnnkit
