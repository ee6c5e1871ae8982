// One registration function per op family; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace cnnkit::python {

void bind_gemm(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_act(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_plan(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);

}  // namespace cnnkit::python
