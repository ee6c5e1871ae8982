#include <string>

#include "cnnkit/errors.h"
#include "cuda/act/act.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

ActParams params_of(const std::string& name, float a, float b) {
  static const std::pair<const char*, Act> names[] = {
      {"relu", Act::relu},       {"leaky_relu", Act::leaky_relu}, {"elu", Act::elu},
      {"relu6", Act::relu6},     {"sigmoid", Act::sigmoid},       {"tanh", Act::tanh},
      {"softplus", Act::softplus}, {"hardtanh", Act::hardtanh},   {"gelu", Act::gelu},
      {"gelu_tanh", Act::gelu_tanh}, {"silu", Act::silu}};
  for (const auto& [n, act] : names) {
    if (name == n) return ActParams{act, a, b};
  }
  throw Error(ErrorKind::Value, "activation: unknown activation '" + name + "'");
}

// out may be the input itself (in-place hardtanh/silu).
void activation(const Where& where, const std::string& name, py::handle input, py::handle out, float a, float b) {
  const ActParams p = params_of(name, a, b);
  const DeviceArray x = array_arg(where, input, "activation", "input", "<f4");
  const DeviceArray y = array_arg(where, out, "activation", "out", "<f4", true);
  expect_numel(y, x.numel, "activation", "out");
  DeviceScope scope(x.data, "activation", where);
  py::gil_scoped_release release;
  activation_forward(p, floats(x), floats(y), x.numel, where);
}

void activation_grad(const Where& where, const std::string& name, py::handle grad_output, py::handle input,
                     py::handle out, float a, float b) {
  const char* op = "activation_backward";
  const ActParams p = params_of(name, a, b);
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(x, dy.numel, op, "input");
  expect_numel(dx, dy.numel, op, "out");
  DeviceScope scope(dy.data, op, where);
  py::gil_scoped_release release;
  activation_backward(p, floats(dy), floats(x), floats(dx), dy.numel, where);
}

// PReLU's (outer, channels, inner) view: one weight per channel along dim 1, or one for all.
struct PreluView {
  int64_t outer = 1, channels = 1, inner = 1;
};

PreluView prelu_view(const DeviceArray& x, const DeviceArray& w, const char* op) {
  PreluView v;
  v.channels = w.numel;
  CNNKIT_CHECK(w.numel >= 1, ErrorKind::Value, std::string(op) + ": weight is empty");
  if (w.numel > 1) {
    CNNKIT_CHECK(x.shape.size() >= 2 && x.shape[1] == w.numel, ErrorKind::Value,
                 std::string(op) + ": weight has " + std::to_string(w.numel) +
                     " entries; it must have 1 or input.shape[1]");
  }
  if (x.numel == 0) return PreluView{0, v.channels, 1};
  v.outer = x.shape.empty() ? 1 : x.shape[0];
  if (w.numel == 1) v.outer = 1;
  v.inner = x.numel / (v.outer * v.channels);
  return v;
}

void prelu(const Where& where, py::handle input, py::handle weight, py::handle out) {
  const DeviceArray x = array_arg(where, input, "prelu", "input", "<f4");
  const DeviceArray w = array_arg(where, weight, "prelu", "weight", "<f4");
  const DeviceArray y = array_arg(where, out, "prelu", "out", "<f4", true);
  expect_numel(y, x.numel, "prelu", "out");
  const PreluView v = prelu_view(x, w, "prelu");
  DeviceScope scope(x.data, "prelu", where);
  py::gil_scoped_release release;
  prelu_forward(floats(x), floats(w), floats(y), v.outer, v.channels, v.inner, where);
}

void prelu_grad(const Where& where, py::handle grad_output, py::handle input, py::handle weight,
                py::handle grad_input, py::handle grad_weight) {
  const char* op = "prelu_backward";
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const DeviceArray w = array_arg(where, weight, op, "weight", "<f4");
  const DeviceArray dx = array_arg(where, grad_input, op, "grad_input", "<f4", true);
  const DeviceArray dw = array_arg(where, grad_weight, op, "grad_weight", "<f4", true);
  expect_numel(dy, x.numel, op, "grad_output");
  expect_numel(dx, x.numel, op, "grad_input");
  expect_numel(dw, w.numel, op, "grad_weight");
  const PreluView v = prelu_view(x, w, op);
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  prelu_backward(floats(dy), floats(x), floats(w), floats(dx), floats(dw), v.outer, v.channels, v.inner, where);
}

}  // namespace

void bind_act(py::module_& m, py::module_& emulate) {
  def_op(m, emulate, "activation", &activation, py::arg("name"), py::arg("input"), py::arg("out"), py::arg("a"),
         py::arg("b"));
  def_op(m, emulate, "activation_backward", &activation_grad, py::arg("name"), py::arg("grad_output"),
         py::arg("input"), py::arg("out"), py::arg("a"), py::arg("b"));
  def_op(m, emulate, "prelu", &prelu, py::arg("input"), py::arg("weight"), py::arg("out"));
  def_op(m, emulate, "prelu_backward", &prelu_grad, py::arg("grad_output"), py::arg("input"), py::arg("weight"),
         py::arg("grad_input"), py::arg("grad_weight"));
}

}  // namespace cnnkit::cuda::python
