#include <string>

#include "cnnkit/errors.h"
#include "cuda/norm/norm.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

NormShape norm_shape(const DeviceArray& x, const char* op) {
  CNNKIT_CHECK(x.shape.size() >= 2, ErrorKind::Value, std::string(op) + ": input must be (N, C, ...)");
  NormShape s;
  s.batch = x.shape[0];
  s.channels = x.shape[1];
  for (size_t d = 2; d < x.shape.size(); ++d) s.spatial *= x.shape[d];
  return s;
}

// An optional per-channel float32 array (None gives null).
float* channel_array(const Where& where, py::handle a, const char* op, const char* name, int64_t channels,
                     bool writable = false) {
  if (a.is_none()) return nullptr;
  const DeviceArray d = array_arg(where, a, op, name, "<f4", writable);
  expect_numel(d, channels, op, name);
  return floats(d);
}

double* scratch_array(const Where& where, py::handle scratch, const char* op, int64_t channels, int64_t chunks) {
  CNNKIT_CHECK(chunks >= 0, ErrorKind::Value, std::string(op) + ": chunks must be >= 0");
  const DeviceArray d = array_arg(where, scratch, op, "scratch", "<f8", true);
  expect_numel(d, batch_norm_scratch(channels, chunks), op, "scratch");
  return static_cast<double*>(d.data);
}

void batch_norm(const Where& where, py::handle input, py::handle running_mean, py::handle running_var,
                py::handle weight, py::handle bias, py::handle out, py::handle scratch, bool training, double momentum,
                double eps, int64_t chunks) {
  const char* op = "batch_norm";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const NormShape s = norm_shape(x, op);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, x.numel, op, "out");
  float* rm = channel_array(where, running_mean, op, "running_mean", s.channels, training);
  float* rv = channel_array(where, running_var, op, "running_var", s.channels, training);
  CNNKIT_CHECK((rm == nullptr) == (rv == nullptr), ErrorKind::Value,
               std::string(op) + ": running_mean and running_var must both be given or both be None");
  CNNKIT_CHECK(training || rm != nullptr, ErrorKind::Value,
               std::string(op) + ": running_mean and running_var are required when training=False");
  CNNKIT_CHECK(!training || x.numel / (s.channels ? s.channels : 1) != 1, ErrorKind::Value,
               std::string(op) + ": expected more than 1 value per channel when training");
  const float* w = channel_array(where, weight, op, "weight", s.channels);
  const float* b = channel_array(where, bias, op, "bias", s.channels);
  double* work = scratch_array(where, scratch, op, s.channels, chunks);
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  batch_norm_forward(s, floats(x), rm, rv, w, b, training, momentum, eps, floats(y), chunks, work, where);
}

void batch_norm_grad(const Where& where, py::handle grad_output, py::handle input, py::handle running_mean,
                     py::handle running_var, py::handle weight, py::handle grad_input, py::handle grad_weight,
                     py::handle grad_bias, py::handle scratch, bool training, double eps, int64_t chunks) {
  const char* op = "batch_norm_backward";
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const NormShape s = norm_shape(x, op);
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  CNNKIT_CHECK(dy.shape == x.shape, ErrorKind::Value, std::string(op) + ": grad_output must have the input's shape");
  const DeviceArray dx = array_arg(where, grad_input, op, "grad_input", "<f4", true);
  expect_numel(dx, x.numel, op, "grad_input");
  const float* rm = training ? nullptr : channel_array(where, running_mean, op, "running_mean", s.channels);
  const float* rv = training ? nullptr : channel_array(where, running_var, op, "running_var", s.channels);
  CNNKIT_CHECK(training || (rm != nullptr && rv != nullptr), ErrorKind::Value,
               std::string(op) + ": running_mean and running_var are required when training=False");
  double* work = scratch_array(where, scratch, op, s.channels, chunks);
  const float* w = channel_array(where, weight, op, "weight", s.channels);
  float* gw = channel_array(where, grad_weight, op, "grad_weight", s.channels, true);
  float* gb = channel_array(where, grad_bias, op, "grad_bias", s.channels, true);
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  batch_norm_backward(s, floats(dy), floats(x), rm, rv, w, training, eps, floats(dx), gw, gb, chunks, work, where);
}

void check_lrn(int64_t size, const char* op) {
  CNNKIT_CHECK(size >= 1, ErrorKind::Value, std::string(op) + ": size must be >= 1, got " + std::to_string(size));
}

void lrn(const Where& where, py::handle input, py::handle out, int64_t size, double alpha, double beta, double k) {
  const char* op = "local_response_norm";
  check_lrn(size, op);
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const NormShape s = norm_shape(x, op);
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, x.numel, op, "out");
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  lrn_forward(s, floats(x), size, alpha, beta, k, floats(y), where);
}

void lrn_grad(const Where& where, py::handle grad_output, py::handle input, py::handle out, int64_t size, double alpha,
              double beta, double k) {
  const char* op = "local_response_norm_backward";
  check_lrn(size, op);
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const NormShape s = norm_shape(x, op);
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  CNNKIT_CHECK(dy.shape == x.shape, ErrorKind::Value, std::string(op) + ": grad_output must have the input's shape");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, x.numel, op, "out");
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  lrn_backward(s, floats(dy), floats(x), size, alpha, beta, k, floats(dx), where);
}

}  // namespace

void bind_norm(py::module_& m, py::module_& emulate) {
  m.def("batch_norm_scratch", &batch_norm_scratch, py::arg("channels"), py::arg("chunks"),
        "doubles of scratch batch_norm and batch_norm_backward take");
  def_op(m, emulate, "batch_norm", &batch_norm, py::arg("input"), py::arg("running_mean"), py::arg("running_var"),
         py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("scratch"), py::arg("training"),
         py::arg("momentum"), py::arg("eps"), py::arg("chunks"));
  def_op(m, emulate, "batch_norm_backward", &batch_norm_grad, py::arg("grad_output"), py::arg("input"),
         py::arg("running_mean"), py::arg("running_var"), py::arg("weight"), py::arg("grad_input"),
         py::arg("grad_weight"), py::arg("grad_bias"), py::arg("scratch"), py::arg("training"), py::arg("eps"),
         py::arg("chunks"));
  def_op(m, emulate, "local_response_norm", &lrn, py::arg("input"), py::arg("out"), py::arg("size"), py::arg("alpha"),
         py::arg("beta"), py::arg("k"));
  def_op(m, emulate, "local_response_norm_backward", &lrn_grad, py::arg("grad_output"), py::arg("input"),
         py::arg("out"), py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"));
}

}  // namespace cnnkit::cuda::python
