// Argument checks shared by the GEMM-shaped bindings (conv2d, linear): optional arrays and
// exact shapes, each failure a Python exception naming the op and the argument.
#pragma once
#include <pybind11/numpy.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "cnnkit/errors.h"
#include "cuda/python/array.h"

namespace cnnkit::cuda::python {

// A float32 device array, or an empty one (no elements, data null) for None.
inline DeviceArray optional_floats(py::handle obj, const char* op, const char* name, bool writable = false) {
  if (!obj.is_none()) return device_array(obj, op, name, "<f4", writable);
  DeviceArray none;
  none.numel = 0;
  return none;
}

// The first non-null pointer among an op's arrays: the device to run on, even where the array
// the op is named after is empty (a weight gradient over an empty batch still writes zeros).
inline const void* any_data(std::initializer_list<const DeviceArray*> arrays) {
  for (const DeviceArray* a : arrays) {
    if (a->data != nullptr) return a->data;
  }
  return nullptr;
}

inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline void expect_shape(const std::vector<int64_t>& got, const std::vector<int64_t>& want, const char* op,
                         const char* name) {
  CNNKIT_CHECK(got == want, ErrorKind::Value,
               std::string(op) + ": " + name + " must have shape " + shape_text(want) + ", got " + shape_text(got));
}

// The arrays of a backward binding: grad_output, input and weight, and the gradients asked for
// (each None or an output array).
struct BackwardArrays {
  DeviceArray dy, x, w, dx, dw, db;
  bool input_grad = false, weight_grad = false, bias_grad = false;

  // Once the op's geometry is known: each gradient given has the shape of what it differentiates.
  void check_gradients(const std::vector<int64_t>& bias_shape, const char* op) const {
    if (input_grad) expect_shape(dx.shape, x.shape, op, "grad_input");
    if (weight_grad) expect_shape(dw.shape, w.shape, op, "grad_weight");
    if (bias_grad) expect_shape(db.shape, bias_shape, op, "grad_bias");
  }
  const void* device_data() const { return any_data({&dy, &x, &w, &dx, &dw, &db}); }
};

inline BackwardArrays backward_arrays(py::handle grad_output, py::handle input, py::handle weight,
                                      py::handle grad_input, py::handle grad_weight, py::handle grad_bias,
                                      const char* op) {
  BackwardArrays a;
  a.dy = device_array(grad_output, op, "grad_output", "<f4");
  a.x = device_array(input, op, "input", "<f4");
  a.w = device_array(weight, op, "weight", "<f4");
  a.dx = optional_floats(grad_input, op, "grad_input", true);
  a.dw = optional_floats(grad_weight, op, "grad_weight", true);
  a.db = optional_floats(grad_bias, op, "grad_bias", true);
  a.input_grad = !grad_input.is_none(), a.weight_grad = !grad_weight.is_none(), a.bias_grad = !grad_bias.is_none();
  return a;
}

// The emulators' NumPy arrays.
using HostFloats = py::array_t<float, py::array::c_style | py::array::forcecast>;

inline std::vector<int64_t> shape_of(const HostFloats& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

inline HostFloats host_empty(const std::vector<int64_t>& shape) {
  return HostFloats(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

}  // namespace cnnkit::cuda::python
