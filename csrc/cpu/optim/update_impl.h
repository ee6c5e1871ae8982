// The optimizer updates on one range of one tensor, written once over a lane
// type V (simd/avx2.h, simd/avx512.h, optim/scalar_lane.h). Each line is one
// float32 operation of PyTorch's single-tensor formula in its order; the files
// including this are built without FMA contraction, so every ISA rounds alike.
//
// Include after the lane type.
#pragma once
#include <cstdint>

#include "cpu/optim/kernels.h"

namespace cnnkit {
namespace {

template <class V>
struct OptimizerLanes {
  using F = typename V::F;

  // np.maximum / torch.maximum: NaN if either side is NaN.
  static F maximum(F a, F b) {
    return V::select(V::lt(a, b), b, V::select(V::ge(a, b), a, V::add(a, b)));
  }
  // np.sign: -1, 0 (for -0 too) or 1, NaN for NaN.
  static F sign(F a) {
    const F zero = V::zero();
    return V::select(V::gt(a, zero), V::set1(1.0f),
                     V::select(V::lt(a, zero), V::set1(-1.0f), V::add(a, zero)));
  }
  static F lerp(const OptimizerCoefficients& c, F start, F end) {
    const F diff = V::sub(end, start);
    return c.lerp_low ? V::add(start, V::mul(V::set1(c.lerp_weight), diff))
                      : V::sub(end, V::mul(diff, V::set1(c.lerp_complement)));
  }
  // The running square keep * s + (fresh_part * g) * g.
  static F square_average(const OptimizerCoefficients& c, F s, F g) {
    return V::add(V::mul(s, V::set1(c.keep)), V::mul(V::mul(V::set1(c.fresh_part), g), g));
  }

  // One vector of elements at offset i; `count` < kWidth for the last partial one.
  static void update(const OptimizerOptions& o, const OptimizerCoefficients& c,
                     const OptimizerTensor& t, int64_t i, int64_t count) {
    const bool full = count == V::kWidth;
    auto load = [&](const float* p) { return full ? V::load(p + i) : V::load_partial(p + i, count); };
    auto store = [&](float* p, F v) {
      if (full) {
        V::store(p + i, v);
      } else {
        V::store_partial(p + i, v, count);
      }
    };
    F p = load(t.param);
    F g = load(t.grad);
    if (o.l1_decay != 0) g = V::add(g, V::mul(V::set1(c.l1_decay), sign(p)));
    const bool coupled_decay =
        o.weight_decay != 0 && !(o.kind == OptimizerKind::Adam && o.decoupled);
    if (coupled_decay) g = V::add(g, V::mul(V::set1(c.weight_decay), p));
    switch (o.kind) {
      case OptimizerKind::Sgd: {
        if (o.momentum != 0) {
          F buf = g;
          if (!t.fresh) {
            buf = V::mul(load(t.state[0]), V::set1(c.momentum));
            buf = V::add(buf, V::mul(V::set1(c.dampening_complement), g));
          }
          store(t.state[0], buf);
          g = o.nesterov ? V::add(g, V::mul(V::set1(c.momentum), buf)) : buf;
        }
        p = V::sub(p, V::mul(V::set1(c.lr), g));
        break;
      }
      case OptimizerKind::Adam: {
        if (o.weight_decay != 0 && o.decoupled) p = V::mul(p, V::set1(c.decay));
        const F m = lerp(c, load(t.state[0]), g);
        const F v = square_average(c, load(t.state[1]), g);
        store(t.state[0], m);
        store(t.state[1], v);
        F second = v;
        if (o.amsgrad) {
          second = maximum(load(t.state[2]), v);
          store(t.state[2], second);
        }
        F denom = V::div(V::sqrt(second), V::set1(c.bias_correction2_sqrt));
        denom = V::add(denom, V::set1(c.eps));
        p = V::sub(p, V::div(V::mul(V::set1(c.step_size), m), denom));
        break;
      }
      case OptimizerKind::RmsProp: {
        const F square = square_average(c, load(t.state[0]), g);
        store(t.state[0], square);
        F avg;
        if (o.centered) {
          const F grad_avg = lerp(c, load(t.state[2]), g);
          store(t.state[2], grad_avg);
          // >= 0 exactly, but it can round below zero once the gradients are
          // nearly constant; PyTorch would take the square root of that (NaN).
          avg = V::sqrt(maximum(V::sub(square, V::mul(grad_avg, grad_avg)), V::zero()));
        } else {
          avg = V::sqrt(square);
        }
        avg = V::add(avg, V::set1(c.eps));
        if (o.momentum > 0) {
          F buf = V::mul(load(t.state[1]), V::set1(c.momentum));
          buf = V::add(buf, V::div(g, avg));
          store(t.state[1], buf);
          p = V::sub(p, V::mul(V::set1(c.lr), buf));
        } else {
          p = V::sub(p, V::div(V::mul(V::set1(c.lr), g), avg));
        }
        break;
      }
      case OptimizerKind::Adagrad: {
        const F sum = V::add(load(t.state[0]), V::mul(g, g));
        store(t.state[0], sum);
        const F std_dev = V::add(V::sqrt(sum), V::set1(c.eps));
        p = V::sub(p, V::div(V::mul(V::set1(c.clr), g), std_dev));
        break;
      }
    }
    store(t.param, p);
  }
};

template <class V>
void optimizer_range(const OptimizerOptions& o, const OptimizerCoefficients& c,
                     const OptimizerTensor& t, int64_t begin, int64_t end) {
  int64_t i = begin;
  for (; i + V::kWidth <= end; i += V::kWidth) OptimizerLanes<V>::update(o, c, t, i, V::kWidth);
  if (i < end) OptimizerLanes<V>::update(o, c, t, i, end - i);
}

}  // namespace
}  // namespace cnnkit
