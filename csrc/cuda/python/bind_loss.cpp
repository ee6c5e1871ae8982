#include <string>

#include "cnnkit/errors.h"
#include "cuda/loss/loss.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

std::string op_name(const char* op, const char* what) { return std::string(op) + ": " + what; }

// The (outer, classes, inner) view of `shape` along `dim` (already in [0, ndim); a 0-d array is
// one row of one element).
RowShape rows_along(const std::vector<int64_t>& shape, int64_t dim, const char* op) {
  RowShape s;
  if (shape.empty()) return s;
  CNNKIT_CHECK(dim >= 0 && dim < static_cast<int64_t>(shape.size()), ErrorKind::Index,
               op_name(op, "dim") + " " + std::to_string(dim) + " is out of range for " +
                   std::to_string(shape.size()) + " dimensions");
  for (int64_t d = 0; d < dim; ++d) s.outer *= shape[d];
  s.classes = shape[dim];
  for (size_t d = dim + 1; d < shape.size(); ++d) s.inner *= shape[d];
  return s;
}

void softmax(const Where& where, py::handle input, py::handle out, int64_t dim, bool log, bool by_block) {
  const char* op = log ? "log_softmax" : "softmax";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, x.numel, op, "out");
  const RowShape s = rows_along(x.shape, dim, op);
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  softmax_forward(floats(x), floats(y), s, log, by_block, where);
}

void softmax_grad(const Where& where, py::handle grad_output, py::handle output, py::handle out, int64_t dim,
                  bool log, bool by_block) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  const DeviceArray y = array_arg(where, output, op, "output", "<f4");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  CNNKIT_CHECK(dy.shape == y.shape, ErrorKind::Value, op_name(op, "grad_output must have the output's shape"));
  expect_numel(dx, y.numel, op, "out");
  const RowShape s = rows_along(y.shape, dim, op);
  DeviceScope scope(y.data, op, where);
  py::gil_scoped_release release;
  softmax_backward(floats(dy), floats(y), floats(dx), s, log, by_block, where);
}

Reduction reduction_of(const std::string& r, const char* op) {
  if (r == "none") return Reduction::none;
  if (r == "mean") return Reduction::mean;
  CNNKIT_CHECK(r == "sum", ErrorKind::Value, op_name(op, "reduction must be 'none', 'mean' or 'sum', got '") + r + "'");
  return Reduction::sum;
}

// The arrays every class-loss call shares, checked: (N, C, ...) input, one target per row (or a
// probability per element), an optional (C,) weight.
ClassLoss class_loss_args(const Where& where, const char* op, py::handle input, py::handle target, bool probabilities,
                          py::handle weight,
                          int64_t ignore_index, float label_smoothing, bool log_softmax, const std::string& reduction) {
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  CNNKIT_CHECK(x.shape.size() >= 2, ErrorKind::Value, op_name(op, "input must be (N, C, ...)"));
  ClassLoss l;
  l.x = floats(x);
  l.shape = rows_along(x.shape, 1, op);
  if (probabilities) {
    CNNKIT_CHECK(log_softmax, ErrorKind::Value, std::string(op) + ": probability targets are for cross-entropy");
    const DeviceArray t = array_arg(where, target, op, "target", "<f4");
    CNNKIT_CHECK(t.shape == x.shape, ErrorKind::Value,
                 std::string(op) + ": probability targets must have the input's shape");
    l.probs = floats(t);
  } else {
    const DeviceArray t = array_arg(where, target, op, "target", "<i8");
    expect_numel(t, l.shape.rows(), op, "target");
    l.target = int64s(t);
  }
  if (!weight.is_none()) {
    const DeviceArray w = array_arg(where, weight, op, "weight", "<f4");
    expect_numel(w, l.shape.classes, op, "weight");
    l.weight = floats(w);
  }
  l.ignore_index = ignore_index;
  l.label_smoothing = label_smoothing;
  l.log_softmax = log_softmax;
  l.reduction = reduction_of(reduction, op);
  return l;
}

void class_loss(const Where& where, py::handle input, py::handle target, bool probabilities, py::handle weight,
                py::handle out,
                py::handle scratch, int64_t ignore_index, float label_smoothing, bool log_softmax,
                const std::string& reduction, bool by_block) {
  const char* op = log_softmax ? "cross_entropy" : "nll_loss";
  const ClassLoss l =
      class_loss_args(where, op, input, target, probabilities, weight, ignore_index, label_smoothing, log_softmax,
                      reduction);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, l.reduction == Reduction::none ? l.shape.rows() : 1, op, "out");
  const DeviceArray s = array_arg(where, scratch, op, "scratch", "<f8", true);
  expect_numel(s, 2 * l.shape.rows(), op, "scratch");
  DeviceScope scope(l.x, op, where);
  py::gil_scoped_release release;
  class_loss_forward(l, floats(y), static_cast<double*>(s.data), by_block, where);
}

void class_loss_grad(const Where& where, py::handle input, py::handle target, bool probabilities, py::handle weight,
                     py::handle grad,
                     py::handle out, py::handle scratch, int64_t ignore_index, float label_smoothing,
                     bool log_softmax, const std::string& reduction, bool by_block) {
  const char* op = log_softmax ? "cross_entropy_backward" : "nll_loss_backward";
  const ClassLoss l =
      class_loss_args(where, op, input, target, probabilities, weight, ignore_index, label_smoothing, log_softmax,
                      reduction);
  const DeviceArray g = array_arg(where, grad, op, "grad_output", "<f4");
  expect_numel(g, l.reduction == Reduction::none ? l.shape.rows() : 1, op, "grad_output");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, l.shape.rows() * l.shape.classes, op, "out");
  const DeviceArray s = array_arg(where, scratch, op, "scratch", "<f8", true);
  expect_numel(s, 1 + l.shape.rows(), op, "scratch");
  DeviceScope scope(l.x, op, where);
  py::gil_scoped_release release;
  class_loss_backward(l, floats(g), floats(dx), static_cast<double*>(s.data), by_block, where);
}

}  // namespace

void bind_loss(py::module_& m, py::module_& emulate) {
  def_op(m, emulate, "softmax", &softmax, py::arg("input"), py::arg("out"), py::arg("dim"), py::arg("log"),
         py::arg("by_block"));
  def_op(m, emulate, "softmax_backward", &softmax_grad, py::arg("grad_output"), py::arg("output"), py::arg("out"),
         py::arg("dim"), py::arg("log"), py::arg("by_block"));
  def_op(m, emulate, "class_loss", &class_loss, py::arg("input"), py::arg("target"), py::arg("probabilities"),
         py::arg("weight"), py::arg("out"), py::arg("scratch"), py::arg("ignore_index"), py::arg("label_smoothing"),
         py::arg("log_softmax"), py::arg("reduction"), py::arg("by_block"));
  def_op(m, emulate, "class_loss_backward", &class_loss_grad, py::arg("input"), py::arg("target"),
         py::arg("probabilities"), py::arg("weight"), py::arg("grad_output"), py::arg("out"), py::arg("scratch"),
         py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("log_softmax"), py::arg("reduction"),
         py::arg("by_block"));
}

}  // namespace cnnkit::cuda::python
