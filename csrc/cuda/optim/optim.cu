#include <math.h>

#include "cuda/common/launch.cuh"
#include "cuda/optim/optim.h"

namespace cnnkit::cuda {

namespace {

// np.sign: 0 at 0, NaN for NaN.
CNNKIT_HD float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); }

// np.maximum: NaN if either is NaN.
CNNKIT_HD float nan_maximum(float a, float b) { return (a != a || a > b) ? a : b; }

// optimizer._lerp_: torch.lerp's rounding, switching form at weight 0.5.
CNNKIT_HD float lerp(float start, float end, const Lerp& l) {
  return l.low ? start + l.weight * (end - start) : end - (end - start) * l.rest;
}

// Optimizer.step's l1 term, then the optimizer's coupled weight decay (each only when non-zero,
// as the Python code skips them).
CNNKIT_HD float decayed(const Decay& d, float g, float p) {
  if (d.l1 != 0.0f) g = g + d.l1 * sign_of(p);
  if (d.weight != 0.0f) g = g + d.weight * p;
  return g;
}

struct SgdWork {
  Sgd o;
  Decay d;
  float* p;
  const float* grad;
  float* buf;
  CNNKIT_HD void operator()(int64_t i) const {
    float g = decayed(d, grad[i], p[i]);
    if (o.momentum != 0.0f) {
      float b = o.first ? g : buf[i] * o.momentum;
      if (!o.first) b = b + o.one_minus_dampening * g;
      buf[i] = b;
      g = o.nesterov ? g + o.momentum * b : b;
    }
    p[i] = p[i] - o.lr * g;
  }
};

struct AdamWork {
  Adam o;
  Decay d;
  float* p;
  const float* grad;
  float* m;
  float* v;
  float* v_max;
  CNNKIT_HD void operator()(int64_t i) const {
    float param = p[i];
    float g = grad[i];
    if (d.l1 != 0.0f) g = g + d.l1 * sign_of(param);
    if (d.weight != 0.0f) {
      if (o.decoupled) {
        param = param * o.decoupled_factor;
      } else {
        g = g + d.weight * param;
      }
    }
    const float m_new = lerp(m[i], g, o.toward_grad);
    const float v_new = v[i] * o.beta2 + o.one_minus_beta2 * g * g;
    m[i] = m_new;
    v[i] = v_new;
    float second = v_new;
    if (v_max) {
      second = nan_maximum(v_max[i], v_new);
      v_max[i] = second;
    }
    const float denom = sqrtf(second) / static_cast<float>(o.bias_correction2_sqrt) + o.eps;
    p[i] = param - static_cast<float>(o.step_size) * m_new / denom;
  }
};

struct RmspropWork {
  Rmsprop o;
  Decay d;
  float* p;
  const float* grad;
  float* sq;
  float* g_avg;
  float* buf;
  CNNKIT_HD void operator()(int64_t i) const {
    const float g = decayed(d, grad[i], p[i]);
    const float s = sq[i] * o.alpha + o.one_minus_alpha * g * g;
    sq[i] = s;
    float avg;
    if (g_avg) {
      const float a = lerp(g_avg[i], g, o.toward_grad);
      g_avg[i] = a;
      avg = sqrtf(nan_maximum(s - a * a, 0.0f));
    } else {
      avg = sqrtf(s);
    }
    avg = avg + o.eps;
    if (buf) {
      const float b = buf[i] * o.momentum + g / avg;
      buf[i] = b;
      p[i] = p[i] - o.lr * b;
    } else {
      p[i] = p[i] - o.lr * g / avg;
    }
  }
};

struct AdagradWork {
  Adagrad o;
  Decay d;
  float* p;
  const float* grad;
  float* sum;
  CNNKIT_HD void operator()(int64_t i) const {
    const float g = decayed(d, grad[i], p[i]);
    const float s = sum[i] + g * g;
    sum[i] = s;
    p[i] = p[i] - static_cast<float>(o.clr) * g / (sqrtf(s) + o.eps);
  }
};

struct AdadeltaWork {
  Adadelta o;
  Decay d;
  float* p;
  const float* grad;
  float* sq;
  float* acc;
  CNNKIT_HD void operator()(int64_t i) const {
    const float g = decayed(d, grad[i], p[i]);
    const float s = sq[i] * o.rho + o.one_minus_rho * g * g;
    sq[i] = s;
    const float delta = sqrtf(acc[i] + o.eps) / sqrtf(s + o.eps) * g;
    acc[i] = acc[i] * o.rho + o.one_minus_rho * delta * delta;
    p[i] = p[i] - o.lr * delta;
  }
};

}  // namespace

void sgd_step(const Sgd& o, const Decay& d, float* param, const float* grad, float* momentum_buffer, int64_t n,
              const Where& where) {
  for_each(SgdWork{o, d, param, grad, momentum_buffer}, n, where, "sgd_step");
}

void adam_step(const Adam& o, const Decay& d, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, int64_t n, const Where& where) {
  for_each(AdamWork{o, d, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq}, n, where, "adam_step");
}

void rmsprop_step(const Rmsprop& o, const Decay& d, float* param, const float* grad, float* square_avg,
                  float* grad_avg, float* momentum_buffer, int64_t n, const Where& where) {
  for_each(RmspropWork{o, d, param, grad, square_avg, grad_avg, momentum_buffer}, n, where, "rmsprop_step");
}

void adagrad_step(const Adagrad& o, const Decay& d, float* param, const float* grad, float* sum, int64_t n,
                  const Where& where) {
  for_each(AdagradWork{o, d, param, grad, sum}, n, where, "adagrad_step");
}

void adadelta_step(const Adadelta& o, const Decay& d, float* param, const float* grad, float* square_avg,
                   float* acc_delta, int64_t n, const Where& where) {
  for_each(AdadeltaWork{o, d, param, grad, square_avg, acc_delta}, n, where, "adadelta_step");
}

}  // namespace cnnkit::cuda
