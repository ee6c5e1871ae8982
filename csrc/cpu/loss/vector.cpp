// The vector softmax / cross-entropy row kernels split over threads, and the
// reductions around them (in row order, so results do not depend on the
// thread count). Built for baseline x86-64: it only hands rows to the
// ISA-specific code.
#include <vector>

#include "core/parallel.h"
#include "cpu/loss/kernels.h"

#ifdef CNNKIT_X86
namespace cnnkit {
namespace {

// Rough cost of one element in parallel_for's units (a vector exp and a few flops).
constexpr int64_t kElementCost = 4;

void softmax_forward(const LossRowKernels& k, const SoftmaxShape& s, bool log, const float* x,
                     float* y) {
  const int64_t C = s.axis;
  parallel_for(s.outer, C * kElementCost, [&](int64_t r0, int64_t r1) {
    k.softmax(log, x + r0 * C, y + r0 * C, r1 - r0, C);
  });
}

void softmax_backward(const LossRowKernels& k, const SoftmaxShape& s, bool log, const float* dy,
                      const float* y, float* dx) {
  const int64_t C = s.axis;
  parallel_for(s.outer, C * kElementCost, [&](int64_t r0, int64_t r1) {
    k.softmax_backward(log, dy + r0 * C, y + r0 * C, dx + r0 * C, r1 - r0, C);
  });
}

void cross_entropy_forward(const LossRowKernels& k, const float* logits, const int64_t* target,
                           int64_t N, int64_t C, int64_t ignore_index, Reduction reduction,
                           float* out) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  std::vector<double> losses(static_cast<size_t>(N));
  parallel_for(N, C * kElementCost, [&](int64_t n0, int64_t n1) {
    k.cross_entropy(logits + n0 * C, target + n0, n1 - n0, C, ignore_index, losses.data() + n0);
  });
  if (reduction == Reduction::None) {
    for (int64_t n = 0; n < N; ++n) out[n] = static_cast<float>(losses[static_cast<size_t>(n)]);
    return;
  }
  double total = 0.0;
  for (double loss : losses) total += loss;
  out[0] = static_cast<float>(reduction == Reduction::Mean ? total / static_cast<double>(count)
                                                           : total);
}

void cross_entropy_backward(const LossRowKernels& k, const float* logits, const int64_t* target,
                            int64_t N, int64_t C, int64_t ignore_index, Reduction reduction,
                            const float* grad_output, float* grad_input) {
  const int64_t count = count_targets(target, N, C, ignore_index);
  std::vector<double> scale(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    double s = reduction == Reduction::None ? grad_output[n] : grad_output[0];
    if (reduction == Reduction::Mean) s /= static_cast<double>(count);
    scale[static_cast<size_t>(n)] = s;
  }
  parallel_for(N, C * kElementCost, [&](int64_t n0, int64_t n1) {
    k.cross_entropy_backward(logits + n0 * C, target + n0, n1 - n0, C, ignore_index,
                             scale.data() + n0, grad_input + n0 * C);
  });
}

}  // namespace

bool softmax_vector_accepts(const SoftmaxShape& s) { return s.inner == 1; }

void softmax_forward_avx2(const SoftmaxShape& s, bool log, const float* x, float* y) {
  softmax_forward(loss_vector_avx2, s, log, x, y);
}
void softmax_backward_avx2(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                           float* dx) {
  softmax_backward(loss_vector_avx2, s, log, dy, y, dx);
}
void cross_entropy_forward_avx2(const float* logits, const int64_t* target, int64_t N, int64_t C,
                                int64_t ignore_index, Reduction reduction, float* out) {
  cross_entropy_forward(loss_vector_avx2, logits, target, N, C, ignore_index, reduction, out);
}
void cross_entropy_backward_avx2(const float* logits, const int64_t* target, int64_t N,
                                 int64_t C, int64_t ignore_index, Reduction reduction,
                                 const float* grad_output, float* grad_input) {
  cross_entropy_backward(loss_vector_avx2, logits, target, N, C, ignore_index, reduction,
                         grad_output, grad_input);
}

void softmax_forward_avx512(const SoftmaxShape& s, bool log, const float* x, float* y) {
  softmax_forward(loss_vector_avx512, s, log, x, y);
}
void softmax_backward_avx512(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                             float* dx) {
  softmax_backward(loss_vector_avx512, s, log, dy, y, dx);
}
void cross_entropy_forward_avx512(const float* logits, const int64_t* target, int64_t N,
                                  int64_t C, int64_t ignore_index, Reduction reduction,
                                  float* out) {
  cross_entropy_forward(loss_vector_avx512, logits, target, N, C, ignore_index, reduction, out);
}
void cross_entropy_backward_avx512(const float* logits, const int64_t* target, int64_t N,
                                   int64_t C, int64_t ignore_index, Reduction reduction,
                                   const float* grad_output, float* grad_input) {
  cross_entropy_backward(loss_vector_avx512, logits, target, N, C, ignore_index, reduction,
                         grad_output, grad_input);
}

}  // namespace cnnkit
#endif  // CNNKIT_X86
