// Every softmax / cross-entropy implementation, declared once for the dispatcher.
#pragma once
#include "cnnkit/loss.h"

namespace cnnkit {

// Checks every target (Index error naming the first bad one) and returns how
// many rows are not ignored. Each cross-entropy kernel calls it first.
int64_t count_targets(const int64_t* target, int64_t N, int64_t C, int64_t ignore_index);

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
