// Batch normalisation over (N, C, S) float32 data (S: the product of the
// spatial sizes, 1 for (N, C) input). Semantics follow PyTorch
// (torch.nn.functional.batch_norm). Null weight means 1, null bias means 0.
#pragma once
#include <cstdint>

namespace cnnkit {

struct BatchNormShape {
  int64_t batch, channels, spatial;
};

// `relu` (the forwards) applies a ReLU to the output in the same pass; a
// backward given that fused forward's output as `relu_output` takes the
// gradient through the ReLU first (0 where relu_output <= 0), as a separate
// relu_backward would, in the same passes.
//
// Normalises with the batch statistics (biased variance). When running_mean and
// running_var are not null they are updated in place:
// r = (1 - momentum) * r + momentum * batch statistic, with the unbiased variance.
// Needs batch * spatial != 1 (Value error); an empty batch writes nothing and
// leaves the running statistics alone.
void batch_norm_training(const BatchNormShape& s, const float* input, const float* weight,
                         const float* bias, float* running_mean, float* running_var,
                         double momentum, double eps, float* out, bool relu = false);

// Normalises with the running statistics.
void batch_norm_inference(const BatchNormShape& s, const float* input, const float* running_mean,
                          const float* running_var, const float* weight, const float* bias,
                          double eps, float* out, bool relu = false);

// Gradients of batch_norm_training. The batch statistics are recomputed from
// `input`: nothing is kept from the forward call. grad_weight and grad_bias
// (written when not null) are the sums of grad_out * x_hat and grad_out.
void batch_norm_backward_training(const BatchNormShape& s, const float* grad_out,
                                  const float* input, const float* weight, double eps,
                                  float* grad_input, float* grad_weight, float* grad_bias,
                                  const float* relu_output = nullptr);

// Gradients of batch_norm_inference (the running statistics are constants).
void batch_norm_backward_inference(const BatchNormShape& s, const float* grad_out,
                                   const float* input, const float* running_mean,
                                   const float* running_var, const float* weight, double eps,
                                   float* grad_input, float* grad_weight, float* grad_bias,
                                   const float* relu_output = nullptr);

// The plain two-pass versions that define the ops above (serial; for tests).
void batch_norm_training_reference(const BatchNormShape& s, const float* input,
                                   const float* weight, const float* bias, float* running_mean,
                                   float* running_var, double momentum, double eps, float* out,
                                   bool relu = false);
void batch_norm_inference_reference(const BatchNormShape& s, const float* input,
                                    const float* running_mean, const float* running_var,
                                    const float* weight, const float* bias, double eps,
                                    float* out, bool relu = false);
void batch_norm_backward_training_reference(const BatchNormShape& s, const float* grad_out,
                                            const float* input, const float* weight, double eps,
                                            float* grad_input, float* grad_weight,
                                            float* grad_bias, const float* relu_output = nullptr);
void batch_norm_backward_inference_reference(const BatchNormShape& s, const float* grad_out,
                                             const float* input, const float* running_mean,
                                             const float* running_var, const float* weight,
                                             double eps, float* grad_input, float* grad_weight,
                                             float* grad_bias, const float* relu_output = nullptr);

// Name of the implementation batch norm uses now (for build_info and tests).
const char* batch_norm_implementation();

// Local response normalisation across channels, as PyTorch's
// local_response_norm: y = x / (k + alpha / size * S) ^ beta, S the sum of x^2
// over channels [c - size/2, c + (size - 1)/2] (zero outside), per position
// of the `inner` = H * W (or any trailing size) plane. Computed in double.
struct LrnShape {
  int64_t batch = 0, channels = 0, inner = 0;
};
struct LrnParams {
  int64_t size = 1;  // >= 1
  double alpha = 1e-4, beta = 0.75, k = 1.0;
};
void local_response_norm(const LrnShape& s, const LrnParams& p, const float* x, float* y);
void local_response_norm_backward(const LrnShape& s, const LrnParams& p, const float* grad_out,
                                  const float* x, float* grad_input);
// The plain loops that define the two above (serial, each window summed anew; for tests).
void local_response_norm_reference(const LrnShape& s, const LrnParams& p, const float* x, float* y);
void local_response_norm_backward_reference(const LrnShape& s, const LrnParams& p,
                                            const float* grad_out, const float* x,
                                            float* grad_input);
// Name of the implementation local_response_norm would use now.
const char* local_response_norm_implementation();

}  // namespace cnnkit
