#include <cmath>
#include <string>

#include "cnnkit/errors.h"
#include "cuda/optim/optim.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

// The parameter (written), its gradient and its state arrays (written; None gives null), all of
// the parameter's size.
struct Tensors {
  const Where& where;
  const char* op;
  DeviceArray param;
  Tensors(const Where& w, const char* o, py::handle p)
      : where(w), op(o), param(array_arg(w, p, o, "param", "<f4", true)) {}
  const float* grad(py::handle g) const { return floats(sized(array_arg(where, g, op, "grad", "<f4"), "grad")); }
  float* state(py::handle s, const char* name) const {
    if (s.is_none()) return nullptr;
    return floats(sized(array_arg(where, s, op, name, "<f4", true), name));
  }
  float* required(py::handle s, const char* name) const {
    CNNKIT_CHECK(!s.is_none(), ErrorKind::Value, std::string(op) + ": " + name + " is required");
    return state(s, name);
  }
  const DeviceArray& sized(const DeviceArray& a, const char* name) const {
    CNNKIT_CHECK(a.numel == param.numel, ErrorKind::Value,
                 std::string(op) + ": " + name + " has " + std::to_string(a.numel) + " elements, the parameter " +
                     std::to_string(param.numel));
    return a;
  }
};

Lerp lerp_of(double weight) { return Lerp{static_cast<float>(weight), static_cast<float>(1.0 - weight), weight < 0.5}; }

Decay decay_of(double l1_decay, double weight_decay) {
  return Decay{static_cast<float>(l1_decay), static_cast<float>(weight_decay)};
}

void sgd(const Where& where, py::handle param, py::handle grad, py::handle momentum_buffer, double lr, double momentum,
         double dampening, bool nesterov, bool first, double l1_decay, double weight_decay) {
  const Tensors t(where, "sgd_step", param);
  const float* g = t.grad(grad);
  float* buf = momentum != 0.0 ? t.required(momentum_buffer, "momentum_buffer") : nullptr;
  const Sgd o{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(1.0 - dampening), nesterov,
              first};
  DeviceScope scope(t.param.data, t.op, where);
  py::gil_scoped_release release;
  sgd_step(o, decay_of(l1_decay, weight_decay), floats(t.param), g, buf, t.param.numel, where);
}

void adam(const Where& where, py::handle param, py::handle grad, py::handle exp_avg, py::handle exp_avg_sq,
          py::handle max_exp_avg_sq, int64_t step, double lr, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled, double l1_decay) {
  const Tensors t(where, "adam_step", param);
  CNNKIT_CHECK(step >= 1, ErrorKind::Value, "adam_step: step must be >= 1 (the count including this step)");
  const float* g = t.grad(grad);
  float* m = t.required(exp_avg, "exp_avg");
  float* v = t.required(exp_avg_sq, "exp_avg_sq");
  float* v_max = t.state(max_exp_avg_sq, "max_exp_avg_sq");
  Adam o{};
  o.toward_grad = lerp_of(1.0 - beta1);
  o.beta2 = static_cast<float>(beta2);
  o.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  o.eps = static_cast<float>(eps);
  o.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(step)));
  o.bias_correction2_sqrt = std::pow(1.0 - std::pow(beta2, static_cast<double>(step)), 0.5);
  o.decoupled = decoupled;
  o.decoupled_factor = static_cast<float>(1.0 - lr * weight_decay);
  DeviceScope scope(t.param.data, t.op, where);
  py::gil_scoped_release release;
  adam_step(o, decay_of(l1_decay, weight_decay), floats(t.param), g, m, v, v_max, t.param.numel, where);
}

void rmsprop(const Where& where, py::handle param, py::handle grad, py::handle square_avg, py::handle grad_avg,
             py::handle momentum_buffer, double lr, double alpha, double eps, double momentum, double l1_decay,
             double weight_decay) {
  const Tensors t(where, "rmsprop_step", param);
  const float* g = t.grad(grad);
  float* sq = t.required(square_avg, "square_avg");
  float* avg = t.state(grad_avg, "grad_avg");
  float* buf = momentum > 0.0 ? t.required(momentum_buffer, "momentum_buffer") : nullptr;
  const Rmsprop o{lerp_of(1.0 - alpha), static_cast<float>(lr), static_cast<float>(alpha),
                  static_cast<float>(1.0 - alpha), static_cast<float>(eps), static_cast<float>(momentum)};
  DeviceScope scope(t.param.data, t.op, where);
  py::gil_scoped_release release;
  rmsprop_step(o, decay_of(l1_decay, weight_decay), floats(t.param), g, sq, avg, buf, t.param.numel, where);
}

void adagrad(const Where& where, py::handle param, py::handle grad, py::handle sum, int64_t step, double lr,
             double lr_decay, double eps, double l1_decay, double weight_decay) {
  const Tensors t(where, "adagrad_step", param);
  CNNKIT_CHECK(step >= 1, ErrorKind::Value, "adagrad_step: step must be >= 1 (the count including this step)");
  const float* g = t.grad(grad);
  float* s = t.required(sum, "sum");
  const Adagrad o{lr / (1.0 + static_cast<double>(step - 1) * lr_decay), static_cast<float>(eps)};
  DeviceScope scope(t.param.data, t.op, where);
  py::gil_scoped_release release;
  adagrad_step(o, decay_of(l1_decay, weight_decay), floats(t.param), g, s, t.param.numel, where);
}

void adadelta(const Where& where, py::handle param, py::handle grad, py::handle square_avg, py::handle acc_delta,
              double lr, double rho, double eps, double l1_decay, double weight_decay) {
  const Tensors t(where, "adadelta_step", param);
  const float* g = t.grad(grad);
  float* sq = t.required(square_avg, "square_avg");
  float* acc = t.required(acc_delta, "acc_delta");
  const Adadelta o{static_cast<float>(lr), static_cast<float>(rho), static_cast<float>(1.0 - rho),
                   static_cast<float>(eps)};
  DeviceScope scope(t.param.data, t.op, where);
  py::gil_scoped_release release;
  adadelta_step(o, decay_of(l1_decay, weight_decay), floats(t.param), g, sq, acc, t.param.numel, where);
}

}  // namespace

void bind_optim(py::module_& m, py::module_& emulate) {
  def_op(m, emulate, "sgd_step", &sgd, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
         py::arg("momentum"), py::arg("dampening"), py::arg("nesterov"), py::arg("first"), py::arg("l1_decay"),
         py::arg("weight_decay"));
  def_op(m, emulate, "adam_step", &adam, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
         py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"), py::arg("step"), py::arg("lr"), py::arg("beta1"),
         py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"), py::arg("l1_decay"));
  def_op(m, emulate, "rmsprop_step", &rmsprop, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
         py::arg("grad_avg"), py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
         py::arg("momentum"), py::arg("l1_decay"), py::arg("weight_decay"));
  def_op(m, emulate, "adagrad_step", &adagrad, py::arg("param"), py::arg("grad"), py::arg("sum"), py::arg("step"),
         py::arg("lr"), py::arg("lr_decay"), py::arg("eps"), py::arg("l1_decay"), py::arg("weight_decay"));
  def_op(m, emulate, "adadelta_step", &adadelta, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
         py::arg("acc_delta"), py::arg("lr"), py::arg("rho"), py::arg("eps"), py::arg("l1_decay"),
         py::arg("weight_decay"));
}

}  // namespace cnnkit::cuda::python
