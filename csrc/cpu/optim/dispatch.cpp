// Optimizer steps: validation, each tensor's float32 constants, and the
// ordered list of implementations, reference last.
#include <cmath>
#include <string>

#include "cnnkit/optim.h"
#include "core/registry.h"
#include "cpu/optim/kernels.h"

namespace cnnkit {
namespace {

using StepFn = void (*)(const OptimizerOptions&, const OptimizerTensor*, int64_t);

void step_avx512(const OptimizerOptions& o, const OptimizerTensor* t, int64_t count) {
  optimizer_step_threaded(optimizer_range_avx512, o, t, count);
}
void step_avx2(const OptimizerOptions& o, const OptimizerTensor* t, int64_t count) {
  optimizer_step_threaded(optimizer_range_avx2, o, t, count);
}
void step_threaded(const OptimizerOptions& o, const OptimizerTensor* t, int64_t count) {
  optimizer_step_threaded(optimizer_range_scalar, o, t, count);
}
void step_reference(const OptimizerOptions& o, const OptimizerTensor* t, int64_t count) {
  optimizer_step_reference(o, t, count);
}

const KernelImpl<OptimizerOptions, StepFn> kSteps[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, nullptr, step_avx512},
    {"vector_avx2", Isa::Avx2, nullptr, step_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, step_threaded},
    {"reference", Isa::Scalar, nullptr, step_reference},
};

// `!(v >= 0)` also refuses NaN.
void check_at_least_zero(double v, const char* what) {
  CNNKIT_CHECK(v >= 0.0 && !std::isinf(v), ErrorKind::Value,
               std::string("Invalid ") + what + ": " + std::to_string(v));
}

// The state buffers each kind reads, in OptimizerTensor::state order.
void required_states(const OptimizerOptions& o, bool need[3]) {
  need[0] = need[1] = need[2] = false;
  switch (o.kind) {
    case OptimizerKind::Sgd: need[0] = o.momentum != 0; break;
    case OptimizerKind::Adam: need[0] = need[1] = true, need[2] = o.amsgrad; break;
    case OptimizerKind::RmsProp:
      need[0] = true, need[1] = o.momentum > 0, need[2] = o.centered;
      break;
    case OptimizerKind::Adagrad: need[0] = true; break;
  }
}

float f32(double v) { return static_cast<float>(v); }

}  // namespace

void validate(const OptimizerOptions& o, const OptimizerTensor* tensors, int64_t count) {
  check_at_least_zero(o.lr, "learning rate");
  check_at_least_zero(o.weight_decay, "weight_decay value");
  check_at_least_zero(o.l1_decay, "l1_decay value");
  check_at_least_zero(o.momentum, "momentum value");
  check_at_least_zero(o.eps, "epsilon value");
  check_at_least_zero(o.alpha, "alpha value");
  check_at_least_zero(o.lr_decay, "lr_decay value");
  CNNKIT_CHECK(std::isfinite(o.dampening), ErrorKind::Value, "dampening must be finite");
  CNNKIT_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, ErrorKind::Value,
               "Invalid beta parameter at index 0: " + std::to_string(o.beta1));
  CNNKIT_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, ErrorKind::Value,
               "Invalid beta parameter at index 1: " + std::to_string(o.beta2));
  CNNKIT_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), ErrorKind::Value,
               "Nesterov momentum requires a momentum and zero dampening");
  CNNKIT_CHECK(count >= 0, ErrorKind::Value, "negative tensor count");
  bool need[3];
  required_states(o, need);
  for (int64_t k = 0; k < count; ++k) {
    const OptimizerTensor& t = tensors[k];
    CNNKIT_CHECK(t.n >= 0, ErrorKind::Value, "parameter " + std::to_string(k) + ": negative size");
    CNNKIT_CHECK(t.step >= 1, ErrorKind::Value,
                 "parameter " + std::to_string(k) + ": step must be >= 1");
    CNNKIT_CHECK(!t.fresh || (o.kind == OptimizerKind::Sgd && o.momentum != 0), ErrorKind::Value,
                 "parameter " + std::to_string(k) +
                     ": fresh applies only to SGD's momentum buffer (momentum != 0)");
    if (t.n == 0) continue;
    CNNKIT_CHECK(t.param && t.grad, ErrorKind::Value,
                 "parameter " + std::to_string(k) + ": missing data or grad");
    for (int s = 0; s < 3; ++s) {
      CNNKIT_CHECK(!need[s] || t.state[s], ErrorKind::Value,
                   "parameter " + std::to_string(k) + ": state buffer " + std::to_string(s) +
                       " is missing");
    }
  }
}

OptimizerCoefficients optimizer_coefficients(const OptimizerOptions& o, const OptimizerTensor& t) {
  OptimizerCoefficients c;
  c.lr = f32(o.lr);
  c.weight_decay = f32(o.weight_decay);
  c.l1_decay = f32(o.l1_decay);
  c.momentum = f32(o.momentum);
  c.dampening_complement = f32(1.0 - o.dampening);
  c.eps = f32(o.eps);
  const double step = static_cast<double>(t.step);
  double lerp = 0.0;
  switch (o.kind) {
    case OptimizerKind::Sgd: break;
    case OptimizerKind::Adam:
      c.decay = f32(1.0 - o.lr * o.weight_decay);
      lerp = 1.0 - o.beta1;
      c.keep = f32(o.beta2);
      c.fresh_part = f32(1.0 - o.beta2);
      c.step_size = f32(o.lr / (1.0 - std::pow(o.beta1, step)));
      c.bias_correction2_sqrt = f32(std::pow(1.0 - std::pow(o.beta2, step), 0.5));
      break;
    case OptimizerKind::RmsProp:
      lerp = 1.0 - o.alpha;
      c.keep = f32(o.alpha);
      c.fresh_part = f32(1.0 - o.alpha);
      break;
    case OptimizerKind::Adagrad:
      c.clr = f32(o.lr / (1.0 + (step - 1.0) * o.lr_decay));
      break;
  }
  c.lerp_weight = f32(lerp);
  c.lerp_complement = f32(1.0 - lerp);
  c.lerp_low = lerp < 0.5;
  return c;
}

void optimizer_step(const OptimizerOptions& o, const OptimizerTensor* tensors, int64_t count) {
  validate(o, tensors, count);
  select_kernel(kSteps, o).run(o, tensors, count);
}

const char* optimizer_implementation(const OptimizerOptions& o) {
  return select_kernel(kSteps, o).name;
}

}  // namespace cnnkit
