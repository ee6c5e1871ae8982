// Device arrays as the bindings see them: any object exporting __cuda_array_interface__ (CuPy
// arrays, PyTorch CUDA tensors, Numba device arrays). The Python layer (cnnkit/cuda) has already
// checked devices, dtypes and layout and allocated the outputs with the caller's own library;
// the checks here are the last line of defence against a wrong pointer reaching a kernel.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "cuda/common/where.h"

namespace cnnkit::cuda::python {

namespace py = pybind11;

struct DeviceArray {
  void* data = nullptr;
  std::vector<int64_t> shape;
  int64_t numel = 1;
  bool readonly = false;
};

// Reads obj.__cuda_array_interface__, requiring a C-contiguous array of `typestr` ("<f4" for
// float32, "<i8" for int64, "|u1" for uint8); `writable` refuses read-only exports.
DeviceArray device_array(py::handle obj, const char* op, const char* name, const char* typestr,
                         bool writable = false);

// The same checks on a NumPy array (the emulators' inputs and outputs): host memory, read through
// the buffer protocol, with the typestr spelled as NumPy's dtype.str.
DeviceArray host_array(py::handle obj, const char* op, const char* name, const char* typestr,
                       bool writable = false);

// device_array on the GPU path, host_array on the emulator's (where.host).
inline DeviceArray array_arg(const Where& where, py::handle obj, const char* op, const char* name,
                             const char* typestr, bool writable = false) {
  return where.host ? host_array(obj, op, name, typestr, writable) : device_array(obj, op, name, typestr, writable);
}

// Value error naming op and argument unless `a` has n elements.
void expect_numel(const DeviceArray& a, int64_t n, const char* op, const char* name);

inline float* floats(const DeviceArray& a) { return static_cast<float*>(a.data); }
inline int64_t* int64s(const DeviceArray& a) { return static_cast<int64_t*>(a.data); }

// Makes the device that owns `pointer` current for the scope of one op and restores the
// caller's device afterwards, so a tensor on cuda:1 is processed on cuda:1. Does nothing for the
// emulator (where.host), whose arrays are in host memory.
class DeviceScope {
 public:
  DeviceScope(const void* pointer, const char* op, const Where& where = Where{});
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace cnnkit::cuda::python
