#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cnnkit/errors.h"
#include "cuda/common/host_exec.h"
#include "cuda/conv/conv.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"
#include "cuda/python/checked.h"

namespace cnnkit::cuda::python {

namespace {

using Ints = std::vector<int64_t>;

conv::ConvAlgo parse_algo(const std::string& algo, const char* op) {
  if (algo == "auto") return conv::ConvAlgo::Auto;
  if (algo == "direct") return conv::ConvAlgo::Direct;
  if (algo == "im2col") return conv::ConvAlgo::Im2col;
  if (algo == "implicit_gemm") return conv::ConvAlgo::ImplicitGemm;
  fail(ErrorKind::Value,
       std::string(op) + ": algo must be 'auto', 'direct', 'im2col' or 'implicit_gemm', got '" + algo + "'");
}

// Parameters stay below 2**31 so that no index product of the kernels can wrap.
void check_params(const Ints& values, size_t count, int64_t minimum, const char* op, const char* name) {
  CNNKIT_CHECK(values.size() == count, ErrorKind::Value,
               std::string(op) + ": " + name + " must have " + std::to_string(count) + " values");
  for (int64_t v : values) {
    CNNKIT_CHECK(v >= minimum, ErrorKind::Value,
                 std::string(op) + ": " + name + " must be >= " + std::to_string(minimum) + ", got " + std::to_string(v));
    CNNKIT_CHECK(v < (int64_t(1) << 31), ErrorKind::Overflow,
                 std::string(op) + ": " + name + " " + std::to_string(v) + " is too large for the GPU kernels");
  }
}

// The geometry of a conv2d of input shape x (N, C, H, W) and weight shape w (K, C/groups, kh,
// kw); padding is (top, bottom, left, right).
conv::ConvGeom geometry(const Ints& x, const Ints& w, const Ints& stride, const Ints& padding, const Ints& dilation,
                        int64_t groups, const char* op) {
  const std::string where = std::string(op) + ": ";
  CNNKIT_CHECK(x.size() == 4, ErrorKind::Value, where + "input must be 4-D (N, C, H, W), got " + shape_text(x));
  CNNKIT_CHECK(w.size() == 4, ErrorKind::Value,
               where + "weight must be 4-D (out_channels, in_channels/groups, kH, kW), got " + shape_text(w));
  check_params(stride, 2, 1, op, "stride");
  check_params(padding, 4, 0, op, "padding");
  check_params(dilation, 2, 1, op, "dilation");
  check_params({groups}, 1, 1, op, "groups");
  conv::ConvGeom g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3], g.K = w[0], g.kh = w[2], g.kw = w[3];
  g.sh = stride[0], g.sw = stride[1], g.pt = padding[0], g.pl = padding[2], g.dh = dilation[0], g.dw = dilation[1];
  g.groups = groups;
  CNNKIT_CHECK(g.C % groups == 0 && w[1] * groups == g.C, ErrorKind::Value,
               where + "weight has " + std::to_string(w[1]) + " input channels per group, the input " +
                   std::to_string(g.C) + " channels in " + std::to_string(groups) + " groups");
  CNNKIT_CHECK(g.K % groups == 0, ErrorKind::Value,
               where + "out_channels " + std::to_string(g.K) + " is not divisible by groups " + std::to_string(groups));
  CNNKIT_CHECK(g.kh >= 1 && g.kw >= 1, ErrorKind::Value, where + "the kernel must be at least 1 x 1");
  const int64_t span_h = g.dh * (g.kh - 1) + 1, span_w = g.dw * (g.kw - 1) + 1;
  const int64_t padded_h = g.H + padding[0] + padding[1], padded_w = g.W + padding[2] + padding[3];
  CNNKIT_CHECK(padded_h >= span_h && padded_w >= span_w, ErrorKind::Value,
               where + "the padded input is smaller than the dilated kernel");
  g.Ho = (padded_h - span_h) / g.sh + 1;
  g.Wo = (padded_w - span_w) / g.sw + 1;
  return g;
}

// The caller's scratch, checked against what the algorithm needs.
float* scratch_of(const DeviceArray& ws, int64_t need, const char* op) {
  CNNKIT_CHECK(ws.numel >= need, ErrorKind::Value,
               std::string(op) + ": workspace has " + std::to_string(ws.numel) + " floats, the algorithm needs " +
                   std::to_string(need) + " (see conv2d_workspace)");
  return need > 0 ? floats(ws) : nullptr;
}

py::object host_result(bool wanted, const Ints& shape, float** data) {
  if (!wanted) {
    *data = nullptr;
    return py::none();
  }
  HostFloats a = host_empty(shape);
  *data = a.mutable_data();
  return std::move(a);
}

}  // namespace

void bind_conv(py::module_& m, py::module_& emulate) {
  m.def(
      "conv2d_workspace",
      [](const Ints& input_shape, const Ints& weight_shape, const Ints& stride, const Ints& padding,
         const Ints& dilation, int64_t groups, const std::string& algo, bool backward, bool input_grad,
         bool weight_grad) {
        const conv::ConvGeom g = geometry(input_shape, weight_shape, stride, padding, dilation, groups, "conv2d");
        return conv::workspace(g, parse_algo(algo, "conv2d"), backward, input_grad, weight_grad);
      },
      py::arg("input_shape"), py::arg("weight_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("algo"), py::arg("backward") = false, py::arg("input_grad") = true,
      py::arg("weight_grad") = true);

  m.def(
      "conv2d",
      [](py::handle input, py::handle weight, py::handle bias, py::handle out, py::handle workspace, const Ints& stride,
         const Ints& padding, const Ints& dilation, int64_t groups, const std::string& algo, uintptr_t stream) {
        const char* op = "conv2d";
        const conv::ConvAlgo a = parse_algo(algo, op);
        const DeviceArray x = device_array(input, op, "input", "<f4");
        const DeviceArray w = device_array(weight, op, "weight", "<f4");
        const DeviceArray b = optional_floats(bias, op, "bias");
        const DeviceArray y = device_array(out, op, "out", "<f4", true);
        const DeviceArray ws = optional_floats(workspace, op, "workspace", true);
        const conv::ConvGeom g = geometry(x.shape, w.shape, stride, padding, dilation, groups, op);
        if (!bias.is_none()) expect_shape(b.shape, {g.K}, op, "bias");
        expect_shape(y.shape, {g.N, g.K, g.Ho, g.Wo}, op, "out");
        float* scratch = scratch_of(ws, conv::workspace(g, a, false, false, false), op);
        DeviceScope scope(any_data({&y, &x, &w}), op);
        py::gil_scoped_release release;
        conv::conv2d_forward(g, a, floats(x), floats(w), floats(b), floats(y), scratch, as_stream(stream));
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("workspace"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("algo"), py::arg("stream"));

  m.def(
      "conv2d_backward",
      [](py::handle grad_output, py::handle input, py::handle weight, py::handle grad_input, py::handle grad_weight,
         py::handle grad_bias, py::handle workspace, const Ints& stride, const Ints& padding, const Ints& dilation,
         int64_t groups, const std::string& algo, uintptr_t stream) {
        const char* op = "conv2d_backward";
        const conv::ConvAlgo a = parse_algo(algo, op);
        const BackwardArrays b = backward_arrays(grad_output, input, weight, grad_input, grad_weight, grad_bias, op);
        const DeviceArray ws = optional_floats(workspace, op, "workspace", true);
        const conv::ConvGeom g = geometry(b.x.shape, b.w.shape, stride, padding, dilation, groups, op);
        expect_shape(b.dy.shape, {g.N, g.K, g.Ho, g.Wo}, op, "grad_output");
        b.check_gradients({g.K}, op);
        float* scratch = scratch_of(ws, conv::workspace(g, a, true, b.input_grad, b.weight_grad), op);
        DeviceScope scope(b.device_data(), op);
        py::gil_scoped_release release;
        conv::conv2d_backward(g, a, floats(b.dy), floats(b.x), floats(b.w), floats(b.dx), floats(b.dw), floats(b.db),
                              scratch, as_stream(stream));
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
      py::arg("grad_bias"), py::arg("workspace"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("algo"), py::arg("stream"));

  emulate.def(
      "conv2d",
      [](HostFloats x, HostFloats w, py::object bias, const Ints& stride, const Ints& padding, const Ints& dilation,
         int64_t groups, const std::string& algo) {
        const char* op = "conv2d";
        const conv::ConvAlgo a = parse_algo(algo, op);
        const conv::ConvGeom g = geometry(shape_of(x), shape_of(w), stride, padding, dilation, groups, op);
        HostFloats b = bias.is_none() ? HostFloats() : bias.cast<HostFloats>();
        if (!bias.is_none()) expect_shape(shape_of(b), {g.K}, op, "bias");
        HostFloats y = host_empty({g.N, g.K, g.Ho, g.Wo});
        std::vector<float> scratch(size_t(conv::workspace(g, a, false, false, false)));
        HostExec ex;
        conv::forward(ex, g, a, x.data(), w.data(), bias.is_none() ? nullptr : b.data(), y.mutable_data(),
                      scratch.data());
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("algo"));

  emulate.def(
      "conv2d_backward",
      [](HostFloats dy, HostFloats x, HostFloats w, const Ints& stride, const Ints& padding, const Ints& dilation,
         int64_t groups, const std::string& algo, bool input_grad, bool weight_grad, bool bias_grad) {
        const char* op = "conv2d_backward";
        const conv::ConvAlgo a = parse_algo(algo, op);
        const conv::ConvGeom g = geometry(shape_of(x), shape_of(w), stride, padding, dilation, groups, op);
        expect_shape(shape_of(dy), {g.N, g.K, g.Ho, g.Wo}, op, "grad_output");
        float *dx, *dw, *db;
        py::object gx = host_result(input_grad, shape_of(x), &dx);
        py::object gw = host_result(weight_grad, shape_of(w), &dw);
        py::object gb = host_result(bias_grad, {g.K}, &db);
        std::vector<float> scratch(size_t(conv::workspace(g, a, true, input_grad, weight_grad)));
        HostExec ex;
        conv::backward(ex, g, a, dy.data(), x.data(), w.data(), dx, dw, db, scratch.data());
        return py::make_tuple(gx, gw, gb);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("algo"), py::arg("input_grad") = true,
      py::arg("weight_grad") = true, py::arg("bias_grad") = true);
}

}  // namespace cnnkit::cuda::python
