// Softmax, log-softmax and cross-entropy on float32 buffers.
#pragma once
#include <cstdint>
#include <string>

namespace cnnkit {

// A tensor viewed as [outer, axis, inner]; softmax runs along `axis` for each
// (outer, inner) pair, so any dim of a C-contiguous tensor maps onto this.
struct SoftmaxShape {
  int64_t outer = 0;
  int64_t axis = 0;
  int64_t inner = 0;
};

// y = softmax(x) or, with `log`, log_softmax(x), computed as x - max - log(sum exp(x - max)):
// finite for any finite input. A line containing NaN or +inf gives NaN, as in PyTorch.
void softmax_forward(const SoftmaxShape& s, bool log, const float* x, float* y);
// Takes the forward OUTPUT y. softmax: dx = y * (dy - sum(dy * y));
// log_softmax: dx = dy - exp(y) * sum(dy); sums along the axis.
void softmax_backward(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                      float* dx);

enum class Reduction { None, Mean, Sum };
// "none", "mean" or "sum"; Value error otherwise.
Reduction parse_reduction(const std::string& name);

// logits [N, C], target [N] class indices. Rows whose target equals
// ignore_index count for nothing; any other target outside [0, C) is an Index
// error raised before any output is written. `out` receives N losses
// (Reduction::None, 0 for ignored rows) or one value: the sum, or the mean
// over the rows not ignored (NaN when there are none, as in PyTorch).
void cross_entropy_forward(const float* logits, const int64_t* target, int64_t N, int64_t C,
                           int64_t ignore_index, Reduction reduction, float* out);
// d(loss)/d(logits) [N, C] given the upstream gradient: N values for
// Reduction::None, one otherwise. Ignored rows get zeros.
void cross_entropy_backward(const float* logits, const int64_t* target, int64_t N, int64_t C,
                            int64_t ignore_index, Reduction reduction, const float* grad_output,
                            float* grad_input);

// The serial loops that define the ops above; kept for tests.
void softmax_forward_reference(const SoftmaxShape& s, bool log, const float* x, float* y);
void softmax_backward_reference(const SoftmaxShape& s, bool log, const float* dy, const float* y,
                                float* dx);
void cross_entropy_forward_reference(const float* logits, const int64_t* target, int64_t N,
                                     int64_t C, int64_t ignore_index, Reduction reduction,
                                     float* out);
void cross_entropy_backward_reference(const float* logits, const int64_t* target, int64_t N,
                                      int64_t C, int64_t ignore_index, Reduction reduction,
                                      const float* grad_output, float* grad_input);

// Name of the implementation softmax_forward would use now.
const char* softmax_implementation(const SoftmaxShape& s);

}  // namespace cnnkit
