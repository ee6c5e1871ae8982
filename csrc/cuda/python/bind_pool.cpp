#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "cnnkit/errors.h"
#include "cnnkit/pool.h"
#include "cuda/pool/pool.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

using Pair = std::pair<int64_t, int64_t>;

// The CPU's own validation and output size (make_pool2d_shape) for an (N, C, H, W) shape.
Pool2dShape pool_shape(const char* op, const std::vector<int64_t>& nchw, Pair kernel, Pair stride, Pair padding,
                       Pair dilation, bool ceil_mode) {
  CNNKIT_CHECK(nchw.size() == 4, ErrorKind::Value, std::string(op) + ": input must be (N, C, H, W)");
  return make_pool2d_shape(op, nchw[0] * nchw[1], nchw[2], nchw[3], kernel.first, kernel.second, stride.first,
                           stride.second, padding.first, padding.second, dilation.first, dilation.second, ceil_mode);
}

int64_t outputs(const Pool2dShape& s) { return s.planes * s.out_h * s.out_w; }
int64_t inputs(const Pool2dShape& s) { return s.planes * s.in_h * s.in_w; }

Pair output_size(const std::vector<int64_t>& nchw, Pair kernel, Pair stride, Pair padding, Pair dilation,
                 bool ceil_mode) {
  const Pool2dShape s = pool_shape("pool2d", nchw, kernel, stride, padding, dilation, ceil_mode);
  return {s.out_h, s.out_w};
}

void max_pool(const Where& where, py::handle input, py::handle out, py::handle indices, Pair kernel, Pair stride,
              Pair padding, Pair dilation, bool ceil_mode) {
  const char* op = "max_pool2d";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const Pool2dShape s = pool_shape(op, x.shape, kernel, stride, padding, dilation, ceil_mode);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, outputs(s), op, "out");
  int64_t* idx = nullptr;
  if (!indices.is_none()) {
    const DeviceArray i = array_arg(where, indices, op, "indices", "<i8", true);
    expect_numel(i, outputs(s), op, "indices");
    idx = int64s(i);
  }
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  max_pool2d_forward(s, floats(x), floats(y), idx, where);
}

void max_pool_grad(const Where& where, py::handle grad_output, py::handle indices, std::vector<int64_t> input_shape,
                   py::handle out, Pair kernel, Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
  const char* op = "max_pool2d_backward";
  const Pool2dShape s = pool_shape(op, input_shape, kernel, stride, padding, dilation, ceil_mode);
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  expect_numel(dy, outputs(s), op, "grad_output");
  const DeviceArray i = array_arg(where, indices, op, "indices", "<i8");
  CNNKIT_CHECK(i.shape == dy.shape, ErrorKind::Value, std::string(op) + ": indices must have grad_output's shape");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, inputs(s), op, "out");
  DeviceScope scope(dy.data, op, where);
  py::gil_scoped_release release;
  max_pool2d_backward(s, floats(dy), int64s(i), floats(dx), where);
}

void avg_pool(const Where& where, py::handle input, py::handle out, Pair kernel, Pair stride, Pair padding,
              bool ceil_mode, bool count_include_pad, int64_t divisor_override) {
  const char* op = "avg_pool2d";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const Pool2dShape s = pool_shape(op, x.shape, kernel, stride, padding, {1, 1}, ceil_mode);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, outputs(s), op, "out");
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  avg_pool2d_forward(s, count_include_pad, divisor_override, floats(x), floats(y), where);
}

void avg_pool_grad(const Where& where, py::handle grad_output, std::vector<int64_t> input_shape, py::handle out,
                   Pair kernel, Pair stride, Pair padding, bool ceil_mode, bool count_include_pad,
                   int64_t divisor_override) {
  const char* op = "avg_pool2d_backward";
  const Pool2dShape s = pool_shape(op, input_shape, kernel, stride, padding, {1, 1}, ceil_mode);
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  expect_numel(dy, outputs(s), op, "grad_output");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, inputs(s), op, "out");
  DeviceScope scope(dy.data, op, where);
  py::gil_scoped_release release;
  avg_pool2d_backward(s, count_include_pad, divisor_override, floats(dy), floats(dx), where);
}

void check_adaptive(const std::vector<int64_t>& nchw, Pair size, const char* op) {
  CNNKIT_CHECK(nchw.size() == 4, ErrorKind::Value, std::string(op) + ": input must be (N, C, H, W)");
  CNNKIT_CHECK(nchw[2] > 0 && nchw[3] > 0, ErrorKind::Value, std::string(op) + ": input must have non-empty H and W");
  CNNKIT_CHECK(size.first >= 1 && size.second >= 1, ErrorKind::Value, std::string(op) + ": output_size must be >= 1");
}

void adaptive(const Where& where, py::handle input, py::handle out, Pair size) {
  const char* op = "adaptive_avg_pool2d";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  check_adaptive(x.shape, size, op);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  const int64_t planes = x.shape[0] * x.shape[1];
  expect_numel(y, planes * size.first * size.second, op, "out");
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  adaptive_avg_pool2d_forward(planes, x.shape[2], x.shape[3], size.first, size.second, floats(x), floats(y), where);
}

void adaptive_grad(const Where& where, py::handle grad_output, std::vector<int64_t> input_shape, py::handle out,
                   Pair size) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_adaptive(input_shape, size, op);
  const int64_t planes = input_shape[0] * input_shape[1];
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  expect_numel(dy, planes * size.first * size.second, op, "grad_output");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, planes * input_shape[2] * input_shape[3], op, "out");
  DeviceScope scope(dy.data, op, where);
  py::gil_scoped_release release;
  adaptive_avg_pool2d_backward(planes, input_shape[2], input_shape[3], size.first, size.second, floats(dy),
                               floats(dx), where);
}

}  // namespace

void bind_pool(py::module_& m, py::module_& emulate) {
  m.def("pool2d_output_size", &output_size, py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        "(out_h, out_w) of a pooling call, with the CPU's checks (no device needed)");
  def_op(m, emulate, "max_pool2d", &max_pool, py::arg("input"), py::arg("out"), py::arg("indices"),
         py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"));
  def_op(m, emulate, "max_pool2d_backward", &max_pool_grad, py::arg("grad_output"), py::arg("indices"),
         py::arg("input_shape"), py::arg("out"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
         py::arg("dilation"), py::arg("ceil_mode"));
  def_op(m, emulate, "avg_pool2d", &avg_pool, py::arg("input"), py::arg("out"), py::arg("kernel_size"),
         py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
         py::arg("divisor_override"));
  def_op(m, emulate, "avg_pool2d_backward", &avg_pool_grad, py::arg("grad_output"), py::arg("input_shape"),
         py::arg("out"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
         py::arg("count_include_pad"), py::arg("divisor_override"));
  def_op(m, emulate, "adaptive_avg_pool2d", &adaptive, py::arg("input"), py::arg("out"), py::arg("output_size"));
  def_op(m, emulate, "adaptive_avg_pool2d_backward", &adaptive_grad, py::arg("grad_output"), py::arg("input_shape"),
         py::arg("out"), py::arg("output_size"));
}

}  // namespace cnnkit::cuda::python
