#include <pybind11/numpy.h>

#include "cnnkit/errors.h"
#include "cpu/act/formulas.h"
#include "cuda/act/act.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

void same_size(const DeviceArray& a, const DeviceArray& b, const char* op, const char* name) {
  CNNKIT_CHECK(a.numel == b.numel, ErrorKind::Value,
               std::string(op) + ": " + name + " has " + std::to_string(b.numel) + " elements, expected " +
                   std::to_string(a.numel));
}

}  // namespace

void bind_act(py::module_& m, py::module_& emulate) {
  m.def(
      "relu",
      [](py::handle x, py::handle out, uintptr_t stream) {
        const DeviceArray in = device_array(x, "relu", "input", "<f4");
        const DeviceArray y = device_array(out, "relu", "out", "<f4", true);
        same_size(in, y, "relu", "out");
        DeviceScope scope(in.data, "relu");
        py::gil_scoped_release release;
        relu_forward(floats(in), floats(y), in.numel, as_stream(stream));
      },
      py::arg("input"), py::arg("out"), py::arg("stream"));
  m.def(
      "relu_backward",
      [](py::handle grad_output, py::handle input, py::handle out, uintptr_t stream) {
        const DeviceArray dy = device_array(grad_output, "relu_backward", "grad_output", "<f4");
        const DeviceArray x = device_array(input, "relu_backward", "input", "<f4");
        const DeviceArray dx = device_array(out, "relu_backward", "out", "<f4", true);
        same_size(dy, x, "relu_backward", "input");
        same_size(dy, dx, "relu_backward", "out");
        DeviceScope scope(dy.data, "relu_backward");
        py::gil_scoped_release release;
        relu_backward(floats(dy), floats(x), floats(dx), dy.numel, as_stream(stream));
      },
      py::arg("grad_output"), py::arg("input"), py::arg("out"), py::arg("stream"));

  // The kernels' per-element work over the whole grid on the host.
  using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
  emulate.def("relu", [](Floats x) {
    Floats y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    for (py::ssize_t i = 0; i < x.size(); ++i) y.mutable_data()[i] = act::relu(x.data()[i]);
    return y;
  });
}

}  // namespace cnnkit::cuda::python
