// The optimizer implementations, declared once for the dispatcher.
#pragma once
#include <cstdint>

#include "cnnkit/optim.h"

namespace cnnkit {

// The float32 constants of one tensor's update, computed in double and rounded
// once (dispatch.cpp, built without FMA contraction, so they equal the values
// NumPy derives from the same Python floats).
struct OptimizerCoefficients {
  float lr = 0, weight_decay = 0, l1_decay = 0;
  float momentum = 0, dampening_complement = 1;  // SGD's 1 - dampening
  float decay = 1;                               // AdamW: 1 - lr * weight_decay
  // lerp(s, g, w) = w < 0.5 ? s + w (g - s) : g - (g - s)(1 - w), torch.lerp's
  // rounding: Adam's first moment (w = 1 - beta1), RMSprop's grad_avg (1 - alpha).
  float lerp_weight = 0, lerp_complement = 1;
  bool lerp_low = true;
  // The running square: s = keep * s + (fresh * g) * g (beta2 and 1 - beta2, alpha and 1 - alpha).
  float keep = 0, fresh_part = 0;
  float step_size = 0, bias_correction2_sqrt = 1;  // Adam
  float eps = 0;
  float clr = 0;  // Adagrad: lr / (1 + (step - 1) lr_decay)
};

OptimizerCoefficients optimizer_coefficients(const OptimizerOptions& o, const OptimizerTensor& t);

// Updates elements [begin, end) of one tensor, serially; built per ISA from update_impl.h.
using OptimizerRangeFn = void (*)(const OptimizerOptions&, const OptimizerCoefficients&,
                                  const OptimizerTensor&, int64_t begin, int64_t end);
void optimizer_range_scalar(const OptimizerOptions&, const OptimizerCoefficients&,
                            const OptimizerTensor&, int64_t begin, int64_t end);
void optimizer_range_avx2(const OptimizerOptions&, const OptimizerCoefficients&,
                          const OptimizerTensor&, int64_t begin, int64_t end);
void optimizer_range_avx512(const OptimizerOptions&, const OptimizerCoefficients&,
                            const OptimizerTensor&, int64_t begin, int64_t end);

// Every tensor's range kernel split over threads (threaded.cpp).
void optimizer_step_threaded(OptimizerRangeFn range, const OptimizerOptions& o,
                             const OptimizerTensor* tensors, int64_t count);

}  // namespace cnnkit
