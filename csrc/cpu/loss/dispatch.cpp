// Softmax and cross-entropy: the ordered lists of implementations, reference
// last, and the checks every implementation relies on.
#include <string>

#include "cnnkit/errors.h"
#include "cnnkit/loss.h"
#include "core/registry.h"
#include "cpu/loss/kernels.h"

namespace cnnkit {
namespace {

struct CrossEntropyShape {};

using SoftmaxForwardFn = void (*)(const SoftmaxShape&, bool, const float*, float*);
using SoftmaxBackwardFn = void (*)(const SoftmaxShape&, bool, const float*, const float*, float*);
using CeForwardFn = void (*)(const float*, const int64_t*, int64_t, int64_t, int64_t, Reduction,
                             float*);
using CeBackwardFn = void (*)(const float*, const int64_t*, int64_t, int64_t, int64_t, Reduction,
                              const float*, float*);

const KernelImpl<SoftmaxShape, SoftmaxForwardFn> kSoftmaxForward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, softmax_vector_accepts, softmax_forward_avx512},
    {"vector_avx2", Isa::Avx2, softmax_vector_accepts, softmax_forward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, softmax_forward_threaded},
    {"reference", Isa::Scalar, nullptr, softmax_forward_reference},
};
const KernelImpl<SoftmaxShape, SoftmaxBackwardFn> kSoftmaxBackward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, softmax_vector_accepts, softmax_backward_avx512},
    {"vector_avx2", Isa::Avx2, softmax_vector_accepts, softmax_backward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, softmax_backward_threaded},
    {"reference", Isa::Scalar, nullptr, softmax_backward_reference},
};
const KernelImpl<CrossEntropyShape, CeForwardFn> kCeForward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, cross_entropy_forward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, cross_entropy_forward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, cross_entropy_forward_threaded},
    {"reference", Isa::Scalar, nullptr, cross_entropy_forward_reference},
};
const KernelImpl<CrossEntropyShape, CeBackwardFn> kCeBackward[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, cross_entropy_backward_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, cross_entropy_backward_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, cross_entropy_backward_threaded},
    {"reference", Isa::Scalar, nullptr, cross_entropy_backward_reference},
};

void check_shape(const SoftmaxShape& s) {
  CNNKIT_CHECK(s.outer >= 0 && s.axis >= 0 && s.inner >= 0, ErrorKind::Value,
        "softmax: negative dimension");
}

}  // namespace

Reduction parse_reduction(const std::string& name) {
  if (name == "none") return Reduction::None;
  if (name == "mean") return Reduction::Mean;
  if (name == "sum") return Reduction::Sum;
  fail(ErrorKind::Value, "reduction must be 'none', 'mean' or 'sum', got '" + name + "'");
}

int64_t count_targets(const int64_t* target, int64_t N, int64_t C, int64_t ignore_index) {
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t t = target[n];
    if (t == ignore_index) continue;
    if (t < 0 || t >= C) {
      fail(ErrorKind::Index, "cross_entropy: target label " + std::to_string(t) + " (target[" +
                                 std::to_string(n) + "]) is out of range [0, " +
                                 std::to_string(C) + ") for " + std::to_string(C) +
                                 " classes and is not ignore_index (" +
                                 std::to_string(ignore_index) + ")");
    }
    ++count;
  }
  return count;
}

void softmax_forward(const SoftmaxShape& s, bool log, const float* x, float* y) {
  check_shape(s);
  select_kernel(kSoftmaxForward, s).run(s, log, x, y);
}

void softmax_backward(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                      float* dx) {
  check_shape(s);
  select_kernel(kSoftmaxBackward, s).run(s, log, dy, y, dx);
}

void cross_entropy_forward(const float* logits, const int64_t* target, int64_t N, int64_t C,
                           int64_t ignore_index, Reduction reduction, float* out) {
  select_kernel(kCeForward, CrossEntropyShape{}).run(logits, target, N, C, ignore_index, reduction,
                                                      out);
}

void cross_entropy_backward(const float* logits, const int64_t* target, int64_t N, int64_t C,
                            int64_t ignore_index, Reduction reduction, const float* grad_output,
                            float* grad_input) {
  select_kernel(kCeBackward, CrossEntropyShape{}).run(logits, target, N, C, ignore_index,
                                                       reduction, grad_output, grad_input);
}

const char* softmax_implementation(const SoftmaxShape& s) {
  return select_kernel(kSoftmaxForward, s).name;
}

}  // namespace cnnkit
