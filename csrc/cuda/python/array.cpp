#include "cuda/python/array.h"

#include <cuda_runtime_api.h>
#include <pybind11/numpy.h>

#include <string>

#include "cnnkit/errors.h"
#include "cuda/common/check.h"

namespace cnnkit::cuda::python {

namespace {

std::string where(const char* op, const char* name) { return std::string(op) + ": " + name; }

}  // namespace

DeviceArray device_array(py::handle obj, const char* op, const char* name, const char* typestr,
                         bool writable) {
  CNNKIT_CHECK(py::hasattr(obj, "__cuda_array_interface__"), ErrorKind::Type,
               where(op, name) + " is not a CUDA array (no __cuda_array_interface__)");
  py::dict cai = obj.attr("__cuda_array_interface__");
  const std::string type = py::str(cai["typestr"]);
  CNNKIT_CHECK(type == typestr, ErrorKind::Type,
               where(op, name) + " must have typestr " + typestr + ", got " + type);
  DeviceArray a;
  for (py::handle extent : py::tuple(cai["shape"])) {
    const int64_t n = extent.cast<int64_t>();
    CNNKIT_CHECK(n >= 0, ErrorKind::Value, where(op, name) + " has a negative extent");
    a.shape.push_back(n);
    a.numel *= n;
  }
  const py::tuple data = cai["data"];
  a.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  a.readonly = data[1].cast<bool>();
  CNNKIT_CHECK(!writable || !a.readonly, ErrorKind::Value, where(op, name) + " is read-only");
  if (cai.contains("strides") && !cai["strides"].is_none() && a.numel > 1) {
    const py::tuple strides = cai["strides"];
    const int64_t itemsize = type == "<i8" ? 8 : (type == "|u1" ? 1 : 4);
    int64_t expected = itemsize;
    for (size_t d = a.shape.size(); d-- > 0;) {
      CNNKIT_CHECK(a.shape[d] == 1 || strides[d].cast<int64_t>() == expected, ErrorKind::Value,
                   where(op, name) + " must be C-contiguous");
      expected *= a.shape[d];
    }
  }
  CNNKIT_CHECK(a.data != nullptr || a.numel == 0, ErrorKind::Value, where(op, name) + " has a null pointer");
  return a;
}

DeviceArray host_array(py::handle obj, const char* op, const char* name, const char* typestr,
                       bool writable) {
  CNNKIT_CHECK(py::isinstance<py::array>(obj), ErrorKind::Type, where(op, name) + " must be a numpy.ndarray");
  const py::array a = py::reinterpret_borrow<py::array>(obj);
  const std::string type = py::str(a.dtype().attr("str"));
  CNNKIT_CHECK(type == typestr, ErrorKind::Type, where(op, name) + " must have dtype " + typestr + ", got " + type);
  CNNKIT_CHECK(a.flags() & py::array::c_style, ErrorKind::Value, where(op, name) + " must be C-contiguous");
  CNNKIT_CHECK(!writable || a.writeable(), ErrorKind::Value, where(op, name) + " is read-only");
  DeviceArray d;
  d.data = const_cast<void*>(a.data());
  d.readonly = !a.writeable();
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    d.shape.push_back(a.shape(i));
    d.numel *= a.shape(i);
  }
  return d;
}

void expect_numel(const DeviceArray& a, int64_t n, const char* op, const char* name) {
  CNNKIT_CHECK(a.numel == n, ErrorKind::Value,
               where(op, name) + " has " + std::to_string(a.numel) + " elements, expected " + std::to_string(n));
}

DeviceScope::DeviceScope(const void* pointer, const char* op, const Where& where) {
  if (pointer == nullptr || where.host) return;
  cudaPointerAttributes attributes{};
  check(op, cudaPointerGetAttributes(&attributes, pointer));
  CNNKIT_CHECK(attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged,
               ErrorKind::Value, std::string(op) + ": the array is not in device memory");
  int current = 0;
  check(op, cudaGetDevice(&current));
  if (current != attributes.device) {
    check(op, cudaSetDevice(attributes.device));
    previous_ = current;
  }
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

}  // namespace cnnkit::cuda::python
