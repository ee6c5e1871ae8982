// One registration function per op family of the CUDA module; module.cpp calls them all.
// Conventions of every binding (the Python side is python/cnnkit/cuda/):
//  - arrays are objects with __cuda_array_interface__, C-contiguous, read with device_array();
//  - outputs are allocated by the caller's library (CuPy, PyTorch) and passed in, so no binding
//    allocates device memory; scratch space comes in the same way, as an argument;
//  - the last argument is `stream`, the caller's current stream as an integer handle;
//  - a binding launches and returns without synchronising, and releases the GIL while it does;
//  - `emulate` (a submodule) runs a kernel's CNNKIT_HD per-thread work over the whole grid on the
//    host, with NumPy arrays, so its index arithmetic is tested without a GPU.
#pragma once
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cnnkit::cuda::python {

inline cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

void bind_act(pybind11::module_& m, pybind11::module_& emulate);
void bind_gemm(pybind11::module_& m, pybind11::module_& emulate);
void bind_conv(pybind11::module_& m, pybind11::module_& emulate);
void bind_linear(pybind11::module_& m, pybind11::module_& emulate);

}  // namespace cnnkit::cuda::python
