// Activations as threaded loops for CPUs without AVX2 (and under a scalar ISA
// cap), one loop per op so the formula inlines and the branch-free ones (relu,
// leaky_relu, relu6, prelu) vectorise. The exp/log based ones call libm per
// element; vector_impl.h has the SIMD versions.
#include <vector>

#include "cpu/act/formulas.h"
#include "cpu/act/kernels.h"
#include "core/parallel.h"

namespace cnnkit {

namespace {

// Rough cost of one element in parallel_for's units: a compare, or a libm call.
constexpr int64_t kCheap = 1;
constexpr int64_t kTranscendental = 16;

template <class F>
void map1(const float* x, float* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

template <class F>
void map2(const float* dy, const float* x, float* dx, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = f(dy[i], x[i]);
  });
}

}  // namespace

void activation_forward_threaded(const ActParams& p, const float* x, float* y, int64_t n) {
  const float a = p.alpha, b = p.beta, th = p.threshold, lo = p.min_val, hi = p.max_val;
  switch (p.kind) {
    case Activation::Relu: return map1(x, y, n, kCheap, [](float v) { return act::relu(v); });
    case Activation::LeakyRelu:
      return map1(x, y, n, kCheap, [a](float v) { return act::leaky_relu(v, a); });
    case Activation::Elu:
      return map1(x, y, n, kTranscendental, [a](float v) { return act::elu(v, a); });
    case Activation::Relu6: return map1(x, y, n, kCheap, [](float v) { return act::relu6(v); });
    case Activation::Sigmoid:
      return map1(x, y, n, kTranscendental, [](float v) { return act::sigmoid(v); });
    case Activation::Tanh:
      return map1(x, y, n, kTranscendental, [](float v) { return act::tanh(v); });
    case Activation::Softplus:
      return map1(x, y, n, 2 * kTranscendental,
                  [b, th](float v) { return act::softplus(v, b, th); });
    case Activation::Hardtanh:
      return map1(x, y, n, kCheap, [lo, hi](float v) { return act::hardtanh(v, lo, hi); });
    case Activation::Gelu:
      return map1(x, y, n, kTranscendental, [](float v) { return act::gelu(v); });
    case Activation::GeluTanh:
      return map1(x, y, n, kTranscendental, [](float v) { return act::gelu_tanh(v); });
    case Activation::Silu:
      return map1(x, y, n, kTranscendental, [](float v) { return act::silu(v); });
  }
}

void activation_backward_threaded(const ActParams& p, const float* dy, const float* x,
                                  float* dx, int64_t n) {
  const float a = p.alpha, b = p.beta, th = p.threshold, lo = p.min_val, hi = p.max_val;
  switch (p.kind) {
    case Activation::Relu: return map2(dy, x, dx, n, kCheap,
                  [](float g, float v) { return act::relu_grad(g, v); });
    case Activation::LeakyRelu:
      return map2(dy, x, dx, n, kCheap,
                  [a](float g, float v) { return act::leaky_relu_grad(g, v, a); });
    case Activation::Elu:
      return map2(dy, x, dx, n, kTranscendental,
                  [a](float g, float v) { return act::elu_grad(g, v, a); });
    case Activation::Relu6: return map2(dy, x, dx, n, kCheap,
                  [](float g, float v) { return act::relu6_grad(g, v); });
    case Activation::Sigmoid: return map2(dy, x, dx, n, kTranscendental,
                  [](float g, float v) { return act::sigmoid_grad(g, v); });
    case Activation::Tanh: return map2(dy, x, dx, n, kTranscendental,
                  [](float g, float v) { return act::tanh_grad(g, v); });
    case Activation::Softplus:
      return map2(dy, x, dx, n, kTranscendental,
                  [b, th](float g, float v) { return act::softplus_grad(g, v, b, th); });
    case Activation::Hardtanh:
      return map2(dy, x, dx, n, kCheap,
                  [lo, hi](float g, float v) { return act::hardtanh_grad(g, v, lo, hi); });
    case Activation::Gelu: return map2(dy, x, dx, n, 2 * kTranscendental,
                  [](float g, float v) { return act::gelu_grad(g, v); });
    case Activation::GeluTanh: return map2(dy, x, dx, n, kTranscendental,
                  [](float g, float v) { return act::gelu_tanh_grad(g, v); });
    case Activation::Silu: return map2(dy, x, dx, n, kTranscendental,
                  [](float g, float v) { return act::silu_grad(g, v); });
  }
}

void elementwise_add_threaded(const float* a, const float* b, float* out, int64_t n, bool relu) {
  if (relu) {
    map2(a, b, out, n, kCheap, [](float u, float v) { return act::relu(u + v); });
  } else {
    map2(a, b, out, n, kCheap, [](float u, float v) { return u + v; });
  }
}

// Work items are (outer, channel) rows of `inner` contiguous elements.
void prelu_forward_threaded(const PreluShape& s, const float* x, const float* weight, float* y) {
  const int64_t rows = s.outer * s.channels;
  parallel_for(rows, s.inner, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float w = weight[s.weight_count == 1 ? 0 : r % s.channels];
      const float* xr = x + r * s.inner;
      float* yr = y + r * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) yr[i] = act::prelu(xr[i], w);
    }
  });
}

// Each row's share of d(weight) is summed in double, then the rows of one
// weight entry are added in a fixed order: the result does not depend on the
// thread count.
void prelu_backward_threaded(const PreluShape& s, const float* dy, const float* x,
                             const float* weight, float* dx, float* dweight) {
  const int64_t rows = s.outer * s.channels;
  std::vector<double> row_sums(static_cast<size_t>(rows));
  parallel_for(rows, 2 * s.inner, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float w = weight[s.weight_count == 1 ? 0 : r % s.channels];
      const int64_t at = r * s.inner;
      double sum = 0.0;
      for (int64_t i = 0; i < s.inner; ++i) {
        dx[at + i] = act::prelu_grad(dy[at + i], x[at + i], w);
        sum += act::prelu_weight_grad(dy[at + i], x[at + i]);
      }
      row_sums[static_cast<size_t>(r)] = sum;
    }
  });
  std::vector<double> totals(static_cast<size_t>(s.weight_count), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    totals[static_cast<size_t>(s.weight_count == 1 ? 0 : r % s.channels)] +=
        row_sums[static_cast<size_t>(r)];
  }
  for (int64_t k = 0; k < s.weight_count; ++k) {
    dweight[k] = static_cast<float>(totals[static_cast<size_t>(k)]);
  }
}

}  // namespace cnnkit
