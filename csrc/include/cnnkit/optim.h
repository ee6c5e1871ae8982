// Fused multi-tensor optimizer steps: one call updates every parameter of a
// group (SGD, Adam/AdamW, RMSprop, Adagrad with PyTorch's update rules).
//
// Every update is a float32 formula evaluated in the order of operations of
// PyTorch's single-tensor implementation (and of cnnkit's NumPy path), each
// operation rounded to float32, no FMA: the scalar, threaded and vector kernels
// agree bit for bit. Hyperparameters are doubles; the constants derived from
// them (1 - beta1, lr / (1 - beta1^t), ...) are computed in double and rounded
// to float32 once, as NumPy does when it multiplies a float32 array by a Python float.
#pragma once
#include <cstdint>

namespace cnnkit {

enum class OptimizerKind { Sgd, Adam, RmsProp, Adagrad };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::Sgd;
  double lr = 1e-3;
  double weight_decay = 0.0;  // Adam with `decoupled`: p *= 1 - lr * weight_decay first
  double l1_decay = 0.0;      // cnnkit's addition: g += l1_decay * sign(p) before anything else
  double momentum = 0.0;      // SGD, RMSprop
  double dampening = 0.0;     // SGD
  bool nesterov = false;      // SGD
  double beta1 = 0.9, beta2 = 0.999;  // Adam
  bool amsgrad = false;               // Adam
  bool decoupled = false;             // Adam: AdamW's weight decay
  double eps = 1e-8;                  // Adam, RMSprop, Adagrad
  double alpha = 0.99;                // RMSprop
  bool centered = false;              // RMSprop
  double lr_decay = 0.0;              // Adagrad
};

// One parameter: `n` floats of param, grad and the state buffers its kind uses
// (nullptr where unused), in this order:
//   Sgd:     momentum_buffer (when momentum != 0)
//   Adam:    exp_avg, exp_avg_sq, max_exp_avg_sq (when amsgrad)
//   RmsProp: square_avg, momentum_buffer (when momentum > 0), grad_avg (when centered)
//   Adagrad: sum
// `step` is the number of this update (1 on the first): Adam's bias correction
// and Adagrad's learning-rate decay use it. `fresh` (SGD with momentum): the
// buffer is set to the gradient instead of updated, as on PyTorch's first step.
struct OptimizerTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* state[3] = {nullptr, nullptr, nullptr};
  int64_t n = 0;
  int64_t step = 1;
  bool fresh = false;
};

// Value error for options out of range (negative lr, betas outside [0, 1),
// Nesterov without momentum, ...), a step below 1 or a state buffer missing.
void validate(const OptimizerOptions& o, const OptimizerTensor* tensors, int64_t count);

// Updates param and state in place for each tensor, threaded over all of them.
void optimizer_step(const OptimizerOptions& o, const OptimizerTensor* tensors, int64_t count);
// The serial loop that defines the update; kept for tests.
void optimizer_step_reference(const OptimizerOptions& o, const OptimizerTensor* tensors,
                              int64_t count);
// Name of the implementation optimizer_step would use now.
const char* optimizer_implementation(const OptimizerOptions& o);

}  // namespace cnnkit
