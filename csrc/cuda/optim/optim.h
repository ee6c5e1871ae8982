// The optimizers' update steps on the GPU, one fused kernel per parameter tensor over the
// parameter, its gradient and its state. Each element follows python/cnnkit/optim/optimizer.py
// operation by operation, in float32 (the NumPy code's arithmetic on float32 arrays): Python-side
// scalars are rounded to float32 as NumPy does with them, the per-step scalars (Adam's bias
// corrections, Adagrad's decayed rate) are computed on the host in double as the Python code does.
#pragma once
#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda {

// Added to the gradient before every update: l1_decay * sign(p), then weight_decay * p
// (coupled decay; AdamW's decoupled decay is Adam::decoupled).
struct Decay {
  float l1 = 0.0f, weight = 0.0f;
};

// optimizer._lerp_'s weight as NumPy applies it: the branch chosen on the double weight, and the
// factors weight and 1 - weight each rounded from double.
struct Lerp {
  float weight = 0.0f, rest = 1.0f;
  bool low = true;  // weight < 0.5
};

struct Sgd {
  float lr, momentum, one_minus_dampening;
  bool nesterov;
  bool first;  // the buffer starts as the gradient
};
// momentum_buffer may be null when momentum == 0.
void sgd_step(const Sgd& o, const Decay& d, float* param, const float* grad, float* momentum_buffer, int64_t n,
              const Where& where);

struct Adam {
  Lerp toward_grad;  // weight 1 - beta1
  float beta2, one_minus_beta2, eps;
  double step_size, bias_correction2_sqrt;
  bool decoupled;                // AdamW: p *= 1 - lr * weight_decay instead of coupled decay
  float decoupled_factor;        // 1 - lr * weight_decay
};
// max_exp_avg_sq: null without AMSGrad.
void adam_step(const Adam& o, const Decay& d, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, int64_t n, const Where& where);

struct Rmsprop {
  Lerp toward_grad;  // weight 1 - alpha
  float lr, alpha, one_minus_alpha, eps, momentum;
};
// grad_avg: null unless centered; momentum_buffer: null unless momentum > 0.
void rmsprop_step(const Rmsprop& o, const Decay& d, float* param, const float* grad, float* square_avg,
                  float* grad_avg, float* momentum_buffer, int64_t n, const Where& where);

struct Adagrad {
  double clr;  // lr / (1 + (step - 1) * lr_decay)
  float eps;
};
void adagrad_step(const Adagrad& o, const Decay& d, float* param, const float* grad, float* sum, int64_t n,
                  const Where& where);

struct Adadelta {
  float lr, rho, one_minus_rho, eps;
};
void adadelta_step(const Adadelta& o, const Decay& d, float* param, const float* grad, float* square_avg,
                   float* acc_delta, int64_t n, const Where& where);

}  // namespace cnnkit::cuda
