// Batch norm: the ordered list of implementations (production first, reference
// last) and the checks every entry point runs before a kernel sees the data.
#include <algorithm>
#include <cmath>
#include <string>

#include "core/registry.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {
namespace {

using NormImpl = KernelImpl<BatchNormShape, const BatchNormKernels*>;

const NormImpl kNormImpls[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, &batch_norm_vector_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, &batch_norm_vector_avx2},
#endif
    {"channels", Isa::Scalar, nullptr, &batch_norm_channels},
    {"reference", Isa::Scalar, nullptr, &batch_norm_reference},
};

const BatchNormKernels& selected(const BatchNormShape& s) {
  return *select_kernel(kNormImpls, s).run;
}

// Returns the number of values per channel.
int64_t check_shape(const BatchNormShape& s, double eps, const char* op) {
  CNNKIT_CHECK(s.batch >= 0 && s.channels >= 0 && s.spatial >= 0, ErrorKind::Value,
        std::string(op) + ": negative size");
  CNNKIT_CHECK(std::isfinite(eps) && eps >= 0.0, ErrorKind::Value,
        std::string(op) + ": eps must be finite and >= 0, got " + std::to_string(eps));
  return checked_mul(s.batch, s.spatial, "values per channel");
}

void check_training(int64_t per_channel, const char* op) {
  CNNKIT_CHECK(per_channel != 1, ErrorKind::Value,
        std::string(op) + ": expected more than 1 value per channel when training "
                          "(N * spatial size is 1)");
}

void run_training(const BatchNormKernels& k, const BatchNormShape& s, const float* input,
                  const float* weight, const float* bias, float* running_mean, float* running_var,
                  double momentum, double eps, float* out, bool relu) {
  const int64_t per_channel = check_shape(s, eps, "batch_norm");
  check_training(per_channel, "batch_norm");
  CNNKIT_CHECK((running_mean == nullptr) == (running_var == nullptr), ErrorKind::Value,
        "batch_norm: running_mean and running_var must both be given or both be None");
  CNNKIT_CHECK(std::isfinite(momentum), ErrorKind::Value, "batch_norm: momentum must be finite");
  // An empty batch has no statistics: nothing to write, running stats untouched (as PyTorch).
  if (per_channel == 0) return;
  k.training(s, input, weight, bias, running_mean, running_var, momentum, eps, out, relu);
}

void run_backward_training(const BatchNormKernels& k, const BatchNormShape& s,
                           const float* grad_out, const float* input, const float* weight,
                           double eps, float* grad_input, float* grad_weight, float* grad_bias,
                           const float* relu_output) {
  const int64_t per_channel = check_shape(s, eps, "batch_norm_backward");
  check_training(per_channel, "batch_norm_backward");
  if (per_channel == 0) {
    if (grad_weight != nullptr) std::fill(grad_weight, grad_weight + s.channels, 0.0f);
    if (grad_bias != nullptr) std::fill(grad_bias, grad_bias + s.channels, 0.0f);
    return;
  }
  k.backward_training(s, grad_out, input, weight, eps, grad_input, grad_weight, grad_bias,
                      relu_output);
}

}  // namespace

void batch_norm_training(const BatchNormShape& s, const float* input, const float* weight,
                         const float* bias, float* running_mean, float* running_var,
                         double momentum, double eps, float* out, bool relu) {
  run_training(selected(s), s, input, weight, bias, running_mean, running_var, momentum, eps, out,
               relu);
}

void batch_norm_training_reference(const BatchNormShape& s, const float* input,
                                   const float* weight, const float* bias, float* running_mean,
                                   float* running_var, double momentum, double eps, float* out,
                                   bool relu) {
  run_training(batch_norm_reference, s, input, weight, bias, running_mean, running_var, momentum,
               eps, out, relu);
}

void batch_norm_inference(const BatchNormShape& s, const float* input, const float* running_mean,
                          const float* running_var, const float* weight, const float* bias,
                          double eps, float* out, bool relu) {
  check_shape(s, eps, "batch_norm");
  selected(s).inference(s, input, running_mean, running_var, weight, bias, eps, out, relu);
}

void batch_norm_inference_reference(const BatchNormShape& s, const float* input,
                                    const float* running_mean, const float* running_var,
                                    const float* weight, const float* bias, double eps,
                                    float* out, bool relu) {
  check_shape(s, eps, "batch_norm");
  batch_norm_reference.inference(s, input, running_mean, running_var, weight, bias, eps, out, relu);
}

void batch_norm_backward_training(const BatchNormShape& s, const float* grad_out,
                                  const float* input, const float* weight, double eps,
                                  float* grad_input, float* grad_weight, float* grad_bias,
                                  const float* relu_output) {
  run_backward_training(selected(s), s, grad_out, input, weight, eps, grad_input, grad_weight,
                        grad_bias, relu_output);
}

void batch_norm_backward_training_reference(const BatchNormShape& s, const float* grad_out,
                                            const float* input, const float* weight, double eps,
                                            float* grad_input, float* grad_weight,
                                            float* grad_bias, const float* relu_output) {
  run_backward_training(batch_norm_reference, s, grad_out, input, weight, eps, grad_input,
                        grad_weight, grad_bias, relu_output);
}

void batch_norm_backward_inference(const BatchNormShape& s, const float* grad_out,
                                   const float* input, const float* running_mean,
                                   const float* running_var, const float* weight, double eps,
                                   float* grad_input, float* grad_weight, float* grad_bias,
                                   const float* relu_output) {
  check_shape(s, eps, "batch_norm_backward");
  selected(s).backward_inference(s, grad_out, input, running_mean, running_var, weight, eps,
                                 grad_input, grad_weight, grad_bias, relu_output);
}

void batch_norm_backward_inference_reference(const BatchNormShape& s, const float* grad_out,
                                             const float* input, const float* running_mean,
                                             const float* running_var, const float* weight,
                                             double eps, float* grad_input, float* grad_weight,
                                             float* grad_bias, const float* relu_output) {
  check_shape(s, eps, "batch_norm_backward");
  batch_norm_reference.backward_inference(s, grad_out, input, running_mean, running_var, weight,
                                          eps, grad_input, grad_weight, grad_bias, relu_output);
}

const char* batch_norm_implementation() {
  return select_kernel(kNormImpls, BatchNormShape{}).name;
}

}  // namespace cnnkit
