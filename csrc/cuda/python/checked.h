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

// The emulators' NumPy arrays.
using HostFloats = py::array_t<float, py::array::c_style | py::array::forcecast>;

inline std::vector<int64_t> shape_of(const HostFloats& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

inline HostFloats host_empty(const std::vector<int64_t>& shape) {
  return HostFloats(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

}  // namespace cnnkit::cuda::python
