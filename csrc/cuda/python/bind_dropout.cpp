#include <pybind11/stl.h>

#include <array>
#include <string>

#include "cnnkit/errors.h"
#include "cuda/dropout/dropout.h"
#include "cuda/dropout/philox.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"

namespace cnnkit::cuda::python {

namespace {

// units: elements (channelwise = false) or the (N, C) channels of an (N, C, ...) input.
void dropout(const Where& where, py::handle input, py::handle out, py::handle mask, bool channelwise, double p,
             uint32_t key0, uint32_t key1) {
  const char* op = channelwise ? "dropout2d" : "dropout";
  CNNKIT_CHECK(p >= 0.0 && p <= 1.0, ErrorKind::Value, std::string(op) + ": p must be in [0, 1]");
  const DeviceArray x = array_arg(where, input, op, "input", "<f4");
  const DeviceArray y = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(y, x.numel, op, "out");
  int64_t units = x.numel, spatial = 1;
  if (channelwise) {
    CNNKIT_CHECK(x.shape.size() >= 2, ErrorKind::Value, std::string(op) + ": input must be (N, C, ...)");
    units = x.shape[0] * x.shape[1];
    spatial = 1;
    for (size_t d = 2; d < x.shape.size(); ++d) spatial *= x.shape[d];
  }
  float* m = nullptr;
  if (!mask.is_none()) {
    const DeviceArray a = array_arg(where, mask, op, "mask", "<f4", true);
    expect_numel(a, units, op, "mask");
    m = floats(a);
  }
  // As the CPU op: the keep test against float32(p), the scale np.float32(1.0 / (1.0 - p)) from
  // the double p; p = 1 drops everything whatever the scale.
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  DeviceScope scope(x.data, op, where);
  py::gil_scoped_release release;
  dropout_forward(floats(x), floats(y), m, units, spatial, static_cast<float>(p), scale, DropoutKey{key0, key1}, where);
}

void dropout_grad(const Where& where, py::handle grad_output, py::handle mask, py::handle out) {
  const char* op = "dropout_backward";
  const DeviceArray dy = array_arg(where, grad_output, op, "grad_output", "<f4");
  const DeviceArray m = array_arg(where, mask, op, "mask", "<f4");
  const DeviceArray dx = array_arg(where, out, op, "out", "<f4", true);
  expect_numel(dx, dy.numel, op, "out");
  CNNKIT_CHECK(m.numel > 0 ? dy.numel % m.numel == 0 : dy.numel == 0, ErrorKind::Value,
               std::string(op) + ": mask (" + std::to_string(m.numel) + " elements) does not divide grad_output (" +
                   std::to_string(dy.numel) + ")");
  const int64_t spatial = m.numel > 0 ? dy.numel / m.numel : 1;
  DeviceScope scope(dy.data, op, where);
  py::gil_scoped_release release;
  dropout_backward(floats(dy), floats(m), floats(dx), m.numel, spatial, where);
}

}  // namespace

void bind_dropout(py::module_& m, py::module_& emulate) {
  def_op(m, emulate, "dropout", &dropout, py::arg("input"), py::arg("out"), py::arg("mask"), py::arg("channelwise"),
         py::arg("p"), py::arg("key0"), py::arg("key1"));
  def_op(m, emulate, "dropout_backward", &dropout_grad, py::arg("grad_output"), py::arg("mask"), py::arg("out"));
  // The generator itself, for its known-answer test.
  emulate.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, uint32_t key0, uint32_t key1) {
        const Philox4 r = philox4x32_10(Philox4{{counter[0], counter[1], counter[2], counter[3]}}, key0, key1);
        return std::array<uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key0"), py::arg("key1"));
}

}  // namespace cnnkit::cuda::python
