#include <string>
#include <vector>

#include "cnnkit/errors.h"
#include "cuda/common/host_exec.h"
#include "cuda/linear/linear.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"
#include "cuda/python/checked.h"

namespace cnnkit::cuda::python {

namespace {

// x is (rows, in) (the Python layer flattens the leading dimensions), w (out, in).
linear::LinearShape linear_shape(const std::vector<int64_t>& x, const std::vector<int64_t>& w, const char* op) {
  CNNKIT_CHECK(x.size() == 2, ErrorKind::Value, std::string(op) + ": input must be 2-D (rows, in_features)");
  CNNKIT_CHECK(w.size() == 2, ErrorKind::Value, std::string(op) + ": weight must be 2-D (out_features, in_features)");
  CNNKIT_CHECK(x[1] == w[1], ErrorKind::Value,
               std::string(op) + ": input has " + std::to_string(x[1]) + " features, weight expects " +
                   std::to_string(w[1]));
  return {x[0], x[1], w[0]};
}

}  // namespace

void bind_linear(py::module_& m, py::module_& emulate) {
  m.def(
      "linear",
      [](py::handle input, py::handle weight, py::handle bias, py::handle out, uintptr_t stream) {
        const char* op = "linear";
        const DeviceArray x = device_array(input, op, "input", "<f4");
        const DeviceArray w = device_array(weight, op, "weight", "<f4");
        const DeviceArray b = optional_floats(bias, op, "bias");
        const DeviceArray y = device_array(out, op, "out", "<f4", true);
        const linear::LinearShape d = linear_shape(x.shape, w.shape, op);
        if (!bias.is_none()) expect_shape(b.shape, {d.out}, op, "bias");
        expect_shape(y.shape, {d.rows, d.out}, op, "out");
        DeviceScope scope(any_data({&y, &x, &w}), op);
        py::gil_scoped_release release;
        linear::linear_forward(d, floats(x), floats(w), floats(b), floats(y), as_stream(stream));
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stream"));

  m.def(
      "linear_backward",
      [](py::handle grad_output, py::handle input, py::handle weight, py::handle grad_input, py::handle grad_weight,
         py::handle grad_bias, uintptr_t stream) {
        const char* op = "linear_backward";
        const BackwardArrays b = backward_arrays(grad_output, input, weight, grad_input, grad_weight, grad_bias, op);
        const linear::LinearShape d = linear_shape(b.x.shape, b.w.shape, op);
        expect_shape(b.dy.shape, {d.rows, d.out}, op, "grad_output");
        b.check_gradients({d.out}, op);
        DeviceScope scope(b.device_data(), op);
        py::gil_scoped_release release;
        linear::linear_backward(d, floats(b.dy), floats(b.x), floats(b.w), floats(b.dx), floats(b.dw), floats(b.db),
                                as_stream(stream));
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
      py::arg("grad_bias"), py::arg("stream"));

  emulate.def(
      "linear",
      [](HostFloats x, HostFloats w, py::object bias) {
        const linear::LinearShape d = linear_shape(shape_of(x), shape_of(w), "linear");
        HostFloats b = bias.is_none() ? HostFloats() : bias.cast<HostFloats>();
        if (!bias.is_none()) expect_shape(shape_of(b), {d.out}, "linear", "bias");
        HostFloats y = host_empty({d.rows, d.out});
        HostExec ex;
        linear::forward(ex, d, x.data(), w.data(), bias.is_none() ? nullptr : b.data(), y.mutable_data());
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none());

  emulate.def(
      "linear_backward",
      [](HostFloats dy, HostFloats x, HostFloats w) {
        const linear::LinearShape d = linear_shape(shape_of(x), shape_of(w), "linear_backward");
        expect_shape(shape_of(dy), {d.rows, d.out}, "linear_backward", "grad_output");
        HostFloats dx = host_empty(shape_of(x)), dw = host_empty(shape_of(w)), db = host_empty({d.out});
        HostExec ex;
        linear::backward(ex, d, dy.data(), x.data(), w.data(), dx.mutable_data(), dw.mutable_data(),
                         db.mutable_data());
        return py::make_tuple(dx, dw, db);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"));
}

}  // namespace cnnkit::cuda::python
