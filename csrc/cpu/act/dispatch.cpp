// Activations: the ordered list of implementations, reference last.
#include <cmath>
#include <cstring>
#include <string>

#include "cnnkit/act.h"
#include "core/registry.h"
#include "cpu/act/kernels.h"

namespace cnnkit {
namespace {

using ForwardFn = void (*)(const ActParams&, const float*, float*, int64_t);
using BackwardFn = void (*)(const ActParams&, const float*, const float*, float*, int64_t);
using AddFn = void (*)(const float*, const float*, float*, int64_t, bool);
using PreluForwardFn = void (*)(const PreluShape&, const float*, const float*, float*);
using PreluBackwardFn = void (*)(const PreluShape&, const float*, const float*, const float*,
                                 float*, float*);

const KernelImpl<ActParams, ForwardFn> kForward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, activation_forward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, activation_forward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, activation_forward_threaded},
    {"reference", Isa::Scalar, nullptr, activation_forward_reference},
};
const KernelImpl<ActParams, BackwardFn> kBackward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, activation_backward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, activation_backward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, activation_backward_threaded},
    {"reference", Isa::Scalar, nullptr, activation_backward_reference},
};
// Selected by ISA alone (the key is unused).
const KernelImpl<int64_t, AddFn> kAdd[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, elementwise_add_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, elementwise_add_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, elementwise_add_threaded},
    {"reference", Isa::Scalar, nullptr, elementwise_add_reference},
};
const KernelImpl<PreluShape, PreluForwardFn> kPreluForward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, prelu_forward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, prelu_forward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, prelu_forward_threaded},
    {"reference", Isa::Scalar, nullptr, prelu_forward_reference},
};
const KernelImpl<PreluShape, PreluBackwardFn> kPreluBackward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, prelu_backward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, prelu_backward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, prelu_backward_threaded},
    {"reference", Isa::Scalar, nullptr, prelu_backward_reference},
};

void check_prelu(const PreluShape& s) {
  CNNKIT_CHECK(s.outer >= 0 && s.channels >= 0 && s.inner >= 0, ErrorKind::Value,
        "prelu: invalid input shape");
  CNNKIT_CHECK(s.weight_count == 1 || s.weight_count == s.channels, ErrorKind::Value,
        "prelu: weight must have 1 or " + std::to_string(s.channels) + " elements, got " +
            std::to_string(s.weight_count));
}

}  // namespace

Activation parse_activation(const char* name) {
  struct Entry {
    const char* name;
    Activation kind;
  };
  static const Entry kNames[] = {
      {"relu", Activation::Relu},       {"leaky_relu", Activation::LeakyRelu},
      {"elu", Activation::Elu},         {"relu6", Activation::Relu6},
      {"sigmoid", Activation::Sigmoid}, {"tanh", Activation::Tanh},
      {"softplus", Activation::Softplus}, {"hardtanh", Activation::Hardtanh},
      {"gelu", Activation::Gelu},       {"gelu_tanh", Activation::GeluTanh},
      {"silu", Activation::Silu},
  };
  for (const Entry& e : kNames) {
    if (std::strcmp(e.name, name) == 0) return e.kind;
  }
  fail(ErrorKind::Value, std::string("unknown activation '") + name + "'");
}

void validate(const ActParams& p) {
  switch (p.kind) {
    case Activation::LeakyRelu:
      CNNKIT_CHECK(std::isfinite(p.alpha), ErrorKind::Value, "leaky_relu: negative_slope must be finite");
      break;
    case Activation::Elu:
      CNNKIT_CHECK(std::isfinite(p.alpha), ErrorKind::Value, "elu: alpha must be finite");
      break;
    case Activation::Softplus:
      CNNKIT_CHECK(std::isfinite(p.beta) && p.beta != 0.0f, ErrorKind::Value,
            "softplus: beta must be finite and non-zero, got " + std::to_string(p.beta));
      CNNKIT_CHECK(!std::isnan(p.threshold), ErrorKind::Value, "softplus: threshold must not be NaN");
      break;
    case Activation::Hardtanh:
      // `!(lo <= hi)` also refuses NaN bounds.
      CNNKIT_CHECK(p.min_val <= p.max_val, ErrorKind::Value,
            "hardtanh: max_val (" + std::to_string(p.max_val) + ") must be >= min_val (" +
                std::to_string(p.min_val) + ")");
      break;
    default: break;
  }
}

void activation_forward(const ActParams& p, const float* x, float* y, int64_t n) {
  validate(p);
  select_kernel(kForward, p).run(p, x, y, n);
}

void activation_backward(const ActParams& p, const float* dy, const float* x, float* dx,
                         int64_t n) {
  validate(p);
  select_kernel(kBackward, p).run(p, dy, x, dx, n);
}

void elementwise_add(const float* a, const float* b, float* out, int64_t n, bool relu) {
  select_kernel(kAdd, n).run(a, b, out, n, relu);
}

void prelu_forward(const PreluShape& s, const float* x, const float* weight, float* y) {
  check_prelu(s);
  select_kernel(kPreluForward, s).run(s, x, weight, y);
}

void prelu_backward(const PreluShape& s, const float* dy, const float* x, const float* weight,
                    float* dx, float* dweight) {
  check_prelu(s);
  select_kernel(kPreluBackward, s).run(s, dy, x, weight, dx, dweight);
}

const char* activation_implementation(const ActParams& p) {
  return select_kernel(kForward, p).name;
}

}  // namespace cnnkit
