// Every batch-norm implementation, declared once for the dispatcher and the tests.
#pragma once
#include "cnnkit/norm.h"

namespace cnnkit {

// One implementation of the four batch-norm kernels. They never throw (they run
// inside parallel regions): the dispatcher validates first. `relu` applies a
// ReLU to the output in the same pass; `relu_output`, when not null, is that
// fused forward's output: the gradient is taken through the ReLU first
// (grad_out where relu_output > 0, else 0), as relu_backward would.
struct BatchNormKernels {
  void (*training)(const BatchNormShape&, const float* input, const float* weight,
                   const float* bias, float* running_mean, float* running_var, double momentum,
                   double eps, float* out, bool relu);
  void (*inference)(const BatchNormShape&, const float* input, const float* running_mean,
                    const float* running_var, const float* weight, const float* bias, double eps,
                    float* out, bool relu);
  void (*backward_training)(const BatchNormShape&, const float* grad_out, const float* input,
                            const float* weight, double eps, float* grad_input,
                            float* grad_weight, float* grad_bias, const float* relu_output);
  void (*backward_inference)(const BatchNormShape&, const float* grad_out, const float* input,
                             const float* running_mean, const float* running_var,
                             const float* weight, double eps, float* grad_input,
                             float* grad_weight, float* grad_bias, const float* relu_output);
};

extern const BatchNormKernels batch_norm_channels;
extern const BatchNormKernels batch_norm_vector_avx2;
extern const BatchNormKernels batch_norm_vector_avx512;
extern const BatchNormKernels batch_norm_reference;

// Serial passes over `rows` rows of one channel (`spatial` floats each, `stride`
// floats apart), built per ISA from vector_impl.h; vector.cpp threads them.
struct BatchNormRangeKernels {
  // out[0..1] = sums of d and d^2 with d = x - shift; with dy, also out[2..3] =
  // sums of g and g * d, g = dy, or with mask, dy where mask > 0 and else 0.
  void (*sums)(const float* x, const float* dy, const float* mask, int64_t rows, int64_t stride,
               int64_t spatial, float shift, double* out);
  // y = (x - center) * scale + shift, then with relu max(y, 0).
  void (*normalise)(const float* x, float* y, int64_t rows, int64_t stride, int64_t spatial,
                    float center, float scale, float shift, bool relu);
  // dx = g * a + ((x - center) * b + c), or g * a when x is null; g as in sums.
  void (*input_grad)(const float* dy, const float* mask, const float* x, float* dx, int64_t rows,
                     int64_t stride, int64_t spatial, float center, float a, float b, float c);
};
extern const BatchNormRangeKernels batch_norm_range_avx2;
extern const BatchNormRangeKernels batch_norm_range_avx512;

// Local response norm on one (image, block of positions) unit, serially;
// built per ISA from lrn_impl.h. `work`: 2 len doubles (forward) or (2 C + 2) len.
struct LrnKernels {
  void (*forward)(const LrnShape&, const LrnParams&, const float* x, float* y, int64_t n,
                  int64_t s0, int64_t len, double* work);
  void (*backward)(const LrnShape&, const LrnParams&, const float* dy, const float* x, float* dx,
                   int64_t n, int64_t s0, int64_t len, double* work);
};
extern const LrnKernels lrn_scalar;
extern const LrnKernels lrn_avx2;
extern const LrnKernels lrn_avx512;

}  // namespace cnnkit
