#include "cpu/act/formulas.h"
#include "cuda/act/act.h"
#include "cuda/common/launch.cuh"

namespace cnnkit::cuda {

namespace {

CNNKIT_HD float forward_one(const ActParams& p, float x) {
  switch (p.act) {
    case Act::relu: return act::relu(x);
    case Act::leaky_relu: return act::leaky_relu(x, p.a);
    case Act::elu: return act::elu(x, p.a);
    case Act::relu6: return act::relu6(x);
    case Act::sigmoid: return act::sigmoid(x);
    case Act::tanh: return act::tanh(x);
    case Act::softplus: return act::softplus(x, p.a, p.b);
    case Act::hardtanh: return act::hardtanh(x, p.a, p.b);
    case Act::gelu: return act::gelu(x);
    case Act::gelu_tanh: return act::gelu_tanh(x);
    case Act::silu: return act::silu(x);
  }
  return x;
}

CNNKIT_HD float backward_one(const ActParams& p, float dy, float x) {
  switch (p.act) {
    case Act::relu: return act::relu_grad(dy, x);
    case Act::leaky_relu: return act::leaky_relu_grad(dy, x, p.a);
    case Act::elu: return act::elu_grad(dy, x, p.a);
    case Act::relu6: return act::relu6_grad(dy, x);
    case Act::sigmoid: return act::sigmoid_grad(dy, x);
    case Act::tanh: return act::tanh_grad(dy, x);
    case Act::softplus: return act::softplus_grad(dy, x, p.a, p.b);
    case Act::hardtanh: return act::hardtanh_grad(dy, x, p.a, p.b);
    case Act::gelu: return act::gelu_grad(dy, x);
    case Act::gelu_tanh: return act::gelu_tanh_grad(dy, x);
    case Act::silu: return act::silu_grad(dy, x);
  }
  return dy;
}

// The activation is uniform over the launch, so the switch never diverges within a warp.
struct Forward {
  ActParams p;
  const float* x;
  float* y;
  CNNKIT_HD void operator()(int64_t i) const { y[i] = forward_one(p, x[i]); }
};

struct Backward {
  ActParams p;
  const float* dy;
  const float* x;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const { dx[i] = backward_one(p, dy[i], x[i]); }
};

CNNKIT_HD int64_t channel_of(int64_t i, int64_t channels, int64_t inner) { return (i / inner) % channels; }

struct PreluForward {
  const float* x;
  const float* w;
  float* y;
  int64_t channels, inner;
  CNNKIT_HD void operator()(int64_t i) const { y[i] = act::prelu(x[i], w[channel_of(i, channels, inner)]); }
};

struct PreluInputGrad {
  const float* dy;
  const float* x;
  const float* w;
  float* dx;
  int64_t channels, inner;
  CNNKIT_HD void operator()(int64_t i) const {
    dx[i] = act::prelu_grad(dy[i], x[i], w[channel_of(i, channels, inner)]);
  }
};

// One segment per weight: the outer x inner elements of its channel, summed in double.
struct PreluWeightGrad {
  using Acc = double;
  const float* dy;
  const float* x;
  float* dw;
  int64_t segments;  // = channels, the number of weights
  int64_t outer, inner;
  CNNKIT_HD Acc partial(int64_t c, unsigned t, unsigned threads) const {
    double s = 0.0;
    for (int64_t k = t; k < outer * inner; k += threads) {
      const int64_t i = ((k / inner) * segments + c) * inner + k % inner;
      s += act::prelu_weight_grad(dy[i], x[i]);
    }
    return s;
  }
  CNNKIT_HD static Acc combine(Acc a, Acc b) { return a + b; }
  CNNKIT_HD void finish(int64_t c, Acc total, unsigned t, unsigned) const {
    if (t == 0) dw[c] = static_cast<float>(total);
  }
};

}  // namespace

void activation_forward(const ActParams& p, const float* x, float* y, int64_t n, const Where& where) {
  for_each(Forward{p, x, y}, n, where, "activation");
}

void activation_backward(const ActParams& p, const float* dy, const float* x, float* dx, int64_t n,
                         const Where& where) {
  for_each(Backward{p, dy, x, dx}, n, where, "activation_backward");
}

void prelu_forward(const float* x, const float* weight, float* y, int64_t outer, int64_t channels, int64_t inner,
                   const Where& where) {
  for_each(PreluForward{x, weight, y, channels, inner}, outer * channels * inner, where, "prelu");
}

void prelu_backward(const float* dy, const float* x, const float* weight, float* dx, float* dweight, int64_t outer,
                    int64_t channels, int64_t inner, const Where& where) {
  for_each(PreluInputGrad{dy, x, weight, dx, channels, inner}, outer * channels * inner, where, "prelu_backward");
  block_reduce(PreluWeightGrad{dy, x, dweight, channels, outer, inner}, where, "prelu_backward");
}

}  // namespace cnnkit::cuda
