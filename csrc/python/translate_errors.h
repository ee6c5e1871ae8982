// cnnkit::Error becomes the Python exception of its kind. Both extension modules (_C and _cuda)
// register this translator, so an error reads the same whichever device raised it.
#pragma once
#include <pybind11/pybind11.h>

#include <exception>

#include "cnnkit/errors.h"

namespace cnnkit::python {

inline void translate_errors() {
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cnnkit::Error& e) {
      PyObject* type = PyExc_ValueError;
      switch (e.kind()) {
        case cnnkit::ErrorKind::Value: type = PyExc_ValueError; break;
        case cnnkit::ErrorKind::Type: type = PyExc_TypeError; break;
        case cnnkit::ErrorKind::Index: type = PyExc_IndexError; break;
        case cnnkit::ErrorKind::Overflow: type = PyExc_OverflowError; break;
        case cnnkit::ErrorKind::Memory: type = PyExc_MemoryError; break;
      }
      PyErr_SetString(type, e.what());
    }
  });
}

}  // namespace cnnkit::python
