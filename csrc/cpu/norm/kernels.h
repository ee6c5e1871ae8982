// Every batch-norm implementation, declared once for the dispatcher and the tests.
#pragma once
#include "cnnkit/norm.h"

namespace cnnkit {

// One implementation of the four batch-norm kernels. They never throw (they run
// inside parallel regions): the dispatcher validates first.
struct BatchNormKernels {
  void (*training)(const BatchNormShape&, const float* input, const float* weight,
                   const float* bias, float* running_mean, float* running_var, double momentum,
                   double eps, float* out);
  void (*inference)(const BatchNormShape&, const float* input, const float* running_mean,
                    const float* running_var, const float* weight, const float* bias, double eps,
                    float* out);
  void (*backward_training)(const BatchNormShape&, const float* grad_out, const float* input,
                            const float* weight, double eps, float* grad_input,
                            float* grad_weight, float* grad_bias);
  void (*backward_inference)(const BatchNormShape&, const float* grad_out, const float* input,
                             const float* running_mean, const float* running_var,
                             const float* weight, double eps, float* grad_input,
                             float* grad_weight, float* grad_bias);
};

extern const BatchNormKernels batch_norm_channels;
extern const BatchNormKernels batch_norm_reference;

}  // namespace cnnkit
