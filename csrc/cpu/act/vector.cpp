// The vector activation kernels split over threads. This file is built for
// baseline x86-64: it only hands contiguous ranges to the ISA-specific code.
#include "core/parallel.h"
#include "cpu/act/kernels.h"

#ifdef CNNKIT_X86
namespace cnnkit {
namespace {

// Rough cost of one element in parallel_for's units: the memory-bound ones
// are a load and a store, the others run a vector exp (~20 flops).
int64_t element_cost(Activation kind) {
  switch (kind) {
    case Activation::Relu:
    case Activation::LeakyRelu:
    case Activation::Relu6:
    case Activation::Hardtanh: return 1;
    default: return 4;
  }
}

void forward(const ActRangeKernels& k, const ActParams& p, const float* x, float* y, int64_t n) {
  parallel_for(n, element_cost(p.kind), [&](int64_t begin, int64_t end) {
    k.forward(p, x + begin, y + begin, end - begin);
  });
}

void backward(const ActRangeKernels& k, const ActParams& p, const float* dy, const float* x,
              float* dx, int64_t n) {
  parallel_for(n, element_cost(p.kind), [&](int64_t begin, int64_t end) {
    k.backward(p, dy + begin, x + begin, dx + begin, end - begin);
  });
}

void add(const ActRangeKernels& k, const float* a, const float* b, float* out, int64_t n,
         bool relu) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    k.add(a + begin, b + begin, out + begin, end - begin, relu);
  });
}

}  // namespace

void activation_forward_avx2(const ActParams& p, const float* x, float* y, int64_t n) {
  forward(act_vector_avx2, p, x, y, n);
}
void activation_backward_avx2(const ActParams& p, const float* dy, const float* x, float* dx,
                              int64_t n) {
  backward(act_vector_avx2, p, dy, x, dx, n);
}
void activation_forward_avx512(const ActParams& p, const float* x, float* y, int64_t n) {
  forward(act_vector_avx512, p, x, y, n);
}
void activation_backward_avx512(const ActParams& p, const float* dy, const float* x, float* dx,
                                int64_t n) {
  backward(act_vector_avx512, p, dy, x, dx, n);
}

void elementwise_add_avx2(const float* a, const float* b, float* out, int64_t n, bool relu) {
  add(act_vector_avx2, a, b, out, n, relu);
}
void elementwise_add_avx512(const float* a, const float* b, float* out, int64_t n, bool relu) {
  add(act_vector_avx512, a, b, out, n, relu);
}

}  // namespace cnnkit
#endif  // CNNKIT_X86
