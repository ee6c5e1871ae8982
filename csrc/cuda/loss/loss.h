// Softmax, log-softmax, cross-entropy and NLL on the GPU. A "row" is the line a softmax or a
// class loss runs along: with the input viewed as (outer, classes, inner), row r holds the
// elements (r / inner) * classes * inner + c * inner + r % inner for c in [0, classes).
// Reductions run in a fixed order (launch.cuh), in double, so results never depend on
// scheduling. `by_block` picks one block per row (long rows) or one thread per row (short rows).
#pragma once
#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda {

struct RowShape {
  int64_t outer = 1, classes = 1, inner = 1;
  int64_t rows() const { return outer * inner; }
};

void softmax_forward(const float* x, float* y, const RowShape& s, bool log, bool by_block, const Where& where);
// From the forward's output y: softmax y (g - sum g y); log-softmax g - exp(y) sum g.
void softmax_backward(const float* dy, const float* y, float* dx, const RowShape& s, bool log, bool by_block,
                      const Where& where);

enum class Reduction { none, mean, sum };

// Class losses. `target` holds one class per row (int64), or `probs` (cross-entropy only) a
// probability per element of x; `weight` (classes) may be null (all ones). A target equal to
// ignore_index contributes nothing; any other target outside [0, classes) makes its row's loss
// NaN (the GPU cannot raise without synchronising). log_softmax = true is cross-entropy (with
// label_smoothing), false is nll_loss of log-probabilities. "mean" divides by the summed weights
// of the counted labels, or by the number of rows for probability targets.
struct ClassLoss {
  const float* x = nullptr;
  const int64_t* target = nullptr;
  const float* probs = nullptr;
  const float* weight = nullptr;
  RowShape shape;
  int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
  bool log_softmax = true;
  Reduction reduction = Reduction::mean;
};

// out: rows floats for Reduction::none, else one. scratch: 2 * rows doubles (each row's loss and
// counted weight), reduced in a fixed order.
void class_loss_forward(const ClassLoss& l, float* out, double* scratch, bool by_block, const Where& where);
// dx of x's shape. grad: the upstream gradient, one per row (none) or one in all (mean, sum);
// scratch: 1 + rows doubles (the mean's divisor and the rows' counted weights).
void class_loss_backward(const ClassLoss& l, const float* grad, float* dx, double* scratch, bool by_block,
                         const Where& where);

}  // namespace cnnkit::cuda
