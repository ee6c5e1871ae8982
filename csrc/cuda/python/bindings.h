// One registration function per op family of the CUDA module; module.cpp calls them all.
// Conventions of every binding (the Python side is python/cnnkit/cuda/):
//  - arrays are objects with __cuda_array_interface__, C-contiguous, read with device_array();
//  - outputs are allocated by the caller's library (CuPy, PyTorch) and passed in, so no binding
//    allocates device memory; scratch space comes in the same way, as an argument;
//  - the last argument is `stream`, the caller's current stream as an integer handle;
//  - a binding launches and returns without synchronising, and releases the GIL while it does;
//  - `emulate` (a submodule) runs a kernel's CNNKIT_HD per-thread work over the whole grid on the
//    host, with NumPy arrays, so its index arithmetic is tested without a GPU: def_op registers
//    both from one binding body.
#pragma once
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda::python {

inline cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// Registers one op twice: in the module, taking device arrays and a trailing `stream`, and in
// `emulate`, taking NumPy arrays, running the same binding body (argument checks included) with
// Where::host. `fn` reads its arrays with array_arg(where, ...).
template <class... A, class... Names>
void def_op(pybind11::module_& m, pybind11::module_& emulate, const char* name, void (*fn)(const Where&, A...),
            Names... names) {
  m.def(name, [fn](A... a, uintptr_t stream) { fn(Where{false, as_stream(stream)}, a...); }, names...,
        pybind11::arg("stream"));
  emulate.def(name, [fn](A... a) { fn(Where{true, nullptr}, a...); }, names...);
}

void bind_act(pybind11::module_& m, pybind11::module_& emulate);
void bind_pool(pybind11::module_& m, pybind11::module_& emulate);
void bind_norm(pybind11::module_& m, pybind11::module_& emulate);
void bind_loss(pybind11::module_& m, pybind11::module_& emulate);
void bind_dropout(pybind11::module_& m, pybind11::module_& emulate);
void bind_optim(pybind11::module_& m, pybind11::module_& emulate);
void bind_gemm(pybind11::module_& m, pybind11::module_& emulate);
void bind_conv(pybind11::module_& m, pybind11::module_& emulate);
void bind_linear(pybind11::module_& m, pybind11::module_& emulate);

}  // namespace cnnkit::cuda::python
