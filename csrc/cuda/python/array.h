// Device arrays as the bindings see them: any object exporting __cuda_array_interface__ (CuPy
// arrays, PyTorch CUDA tensors, Numba device arrays). The Python layer (cnnkit/cuda) has already
// checked devices, dtypes and layout and allocated the outputs with the caller's own library;
// the checks here are the last line of defence against a wrong pointer reaching a kernel.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

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

inline float* floats(const DeviceArray& a) { return static_cast<float*>(a.data); }

// Makes the device that owns `pointer` current for the scope of one op and restores the
// caller's device afterwards, so a tensor on cuda:1 is processed on cuda:1.
class DeviceScope {
 public:
  DeviceScope(const void* pointer, const char* op);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace cnnkit::cuda::python
