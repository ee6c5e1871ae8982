// Every softmax / cross-entropy implementation, declared once for the dispatcher.
#pragma once
#include "cnnkit/loss.h"

namespace cnnkit {

// Checks every target (Index error naming the first bad one) and returns how
// many rows are not ignored. Each cross-entropy kernel calls it first.
int64_t count_targets(const int64_t* target, int64_t N, int64_t C, int64_t ignore_index);

// Vector kernels over `rows` contiguous rows of C classes, serial; built per
// ISA from vector_impl.h. They never throw: targets are checked first.
struct LossRowKernels {
  void (*softmax)(bool log, const float* x, float* y, int64_t rows, int64_t C);
  void (*softmax_backward)(bool log, const float* dy, const float* y, float* dx, int64_t rows,
                           int64_t C);
  // losses[r] = the loss of row r in double, 0 for ignored rows.
  void (*cross_entropy)(const float* logits, const int64_t* target, int64_t rows, int64_t C,
                        int64_t ignore_index, double* losses);
  // grad rows = scale[r] * (softmax - onehot), zeros for ignored rows.
  void (*cross_entropy_backward)(const float* logits, const int64_t* target, int64_t rows,
                                 int64_t C, int64_t ignore_index, const double* scale,
                                 float* grad);
};
extern const LossRowKernels loss_vector_avx2;
extern const LossRowKernels loss_vector_avx512;

// The vector kernels split over threads (vector.cpp); softmax only for inner == 1.
bool softmax_vector_accepts(const SoftmaxShape& s);
void softmax_forward_avx2(const SoftmaxShape& s, bool log, const float* x, float* y);
void softmax_backward_avx2(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                           float* dx);
void cross_entropy_forward_avx2(const float* logits, const int64_t* target, int64_t N, int64_t C,
                                int64_t ignore_index, Reduction reduction, float* out);
void cross_entropy_backward_avx2(const float* logits, const int64_t* target, int64_t N,
                                 int64_t C, int64_t ignore_index, Reduction reduction,
                                 const float* grad_output, float* grad_input);
void softmax_forward_avx512(const SoftmaxShape& s, bool log, const float* x, float* y);
void softmax_backward_avx512(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                             float* dx);
void cross_entropy_forward_avx512(const float* logits, const int64_t* target, int64_t N,
                                  int64_t C, int64_t ignore_index, Reduction reduction,
                                  float* out);
void cross_entropy_backward_avx512(const float* logits, const int64_t* target, int64_t N,
                                   int64_t C, int64_t ignore_index, Reduction reduction,
                                   const float* grad_output, float* grad_input);

void softmax_forward_threaded(const SoftmaxShape& s, bool log, const float* x, float* y);
void softmax_backward_threaded(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                               float* dx);
void cross_entropy_forward_threaded(const float* logits, const int64_t* target, int64_t N,
                                    int64_t C, int64_t ignore_index, Reduction reduction,
                                    float* out);
void cross_entropy_backward_threaded(const float* logits, const int64_t* target, int64_t N,
                                     int64_t C, int64_t ignore_index, Reduction reduction,
                                     const float* grad_output, float* grad_input);

}  // namespace cnnkit
