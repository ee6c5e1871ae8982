// The optional extension module cnnkit._cuda: device detection and the CUDA op families.
// The CUDA runtime is linked statically and loads the driver on first use, so this module
// imports on a machine with no GPU and no driver; device_count() then says why none is usable.
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <string>

#include "cnnkit/errors.h"
#include "cuda/common/check.h"
#include "cuda/python/bindings.h"
#include "python/translate_errors.h"

namespace py = pybind11;

namespace {

// (number of usable devices, why there are none: "" when there are some)
std::pair<int, std::string> device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // a missing driver is an answer here, not a sticky error for later calls
    const std::string error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    int driver = 0;
    // Without any driver the runtime reports an "insufficient" one; say what is really missing.
    if (status == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
      return {0, "no NVIDIA driver is installed (" + error + ")"};
    }
    return {0, error};
  }
  return {count, count == 0 ? "no CUDA device found" : ""};
}

py::dict device_properties(int device) {
  cudaDeviceProp prop{};
  cnnkit::cuda::check("device_properties", cudaGetDeviceProperties(&prop, device));
  py::dict d;
  d["name"] = std::string(prop.name);
  d["compute_capability"] = py::make_tuple(prop.major, prop.minor);
  d["total_memory"] = static_cast<uint64_t>(prop.totalGlobalMem);
  d["multiprocessors"] = prop.multiProcessorCount;
  d["shared_memory_per_block_optin"] = static_cast<uint64_t>(prop.sharedMemPerBlockOptin);
  return d;
}

int version_of(cudaError_t (*query)(int*)) {
  int v = 0;
  if (query(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "cnnkit CUDA kernels (private: use cnnkit.functional with CuPy or PyTorch CUDA arrays)";
  cnnkit::python::translate_errors();
  m.def("device_count", &device_count);
  m.def("device_properties", &device_properties, py::arg("device"));
  m.def("runtime_version", [] { return version_of(&cudaRuntimeGetVersion); });
  m.def("driver_version", [] { return version_of(&cudaDriverGetVersion); });
  // The CMAKE_CUDA_ARCHITECTURES this module was built for, e.g. "75-real 80-real 90".
  m.attr("architectures") = CNNKIT_CUDA_ARCHITECTURES;
  py::module_ emulate = m.def_submodule(
      "emulate", "The kernels' per-thread work run over the whole grid on the host (tests without a GPU)");
  cnnkit::cuda::python::bind_act(m, emulate);
  cnnkit::cuda::python::bind_loss(m, emulate);
  cnnkit::cuda::python::bind_pool(m, emulate);
  cnnkit::cuda::python::bind_norm(m, emulate);
  cnnkit::cuda::python::bind_optim(m, emulate);
  cnnkit::cuda::python::bind_dropout(m, emulate);
  cnnkit::cuda::python::bind_gemm(m, emulate);
  cnnkit::cuda::python::bind_conv(m, emulate);
  cnnkit::cuda::python::bind_linear(m, emulate);
}
