// Helpers shared by the binding files: array access, output allocation and
// the GIL. Bindings receive arrays the Python layer has already validated and
// made float32 C-contiguous; the checks here are the last line of defence.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "python/array_cache.h"
#include "cnnkit/errors.h"

namespace cnnkit::python {

namespace py = pybind11;

// NumPy's NPY_ARRAY_ALIGNED: with it pybind11 copies a view whose data is not
// aligned to its dtype (np.frombuffer(buf, offset=1)) into aligned memory, so
// kernels never dereference a misaligned pointer.
constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;

// Read-only float32 input; pybind11 converts anything else into an aligned C-contiguous copy.
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast | kAligned>;

// "(2, 3)", "(5,)": a shape as Python prints it, for error messages.
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

inline void require_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  CNNKIT_CHECK(a.ndim() == ndim, ErrorKind::Value,
        std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
            std::to_string(a.ndim()));
}

// Arrays written in place cannot be copied to aligned memory: the caller's
// array would not see the update.
inline void require_aligned(const py::array& a, const char* name) {
  CNNKIT_CHECK((a.flags() & kAligned) != 0, ErrorKind::Value,
        std::string(name) + " must be aligned to 4 bytes to be written in place (it is a view at an odd "
            "byte offset, e.g. np.frombuffer(..., offset=1)); pass an aligned copy");
}

// A new uninitialised float32 array; the element count is checked before
// allocating. A large one lives in a block of the array cache (array_cache.h),
// returned to it when NumPy frees the array.
inline FloatArray new_float_array(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count = checked_mul(count, d, "output size");
  const int64_t bytes = checked_mul(count, static_cast<int64_t>(sizeof(float)), "output bytes");
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  if (static_cast<size_t>(bytes) < kCachedArrayBytes) return FloatArray(dims);
  CachedBlock* block = acquire_block(static_cast<size_t>(bytes));
  py::capsule owner(block, [](void* p) { release_block(static_cast<CachedBlock*>(p)); });
  return FloatArray(dims, static_cast<const float*>(block->data), owner);
}

// An array the kernel writes into (running statistics, gradients): it must be
// float32, C-contiguous and writeable, because writing into a converted copy
// would silently lose the update.
inline float* writable_floats(py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4) {
    fail(ErrorKind::Type, std::string(name) + " must be a float32 array");
  }
  CNNKIT_CHECK((a.flags() & py::array::c_style) != 0, ErrorKind::Value,
        std::string(name) + " must be C-contiguous");
  CNNKIT_CHECK(a.writeable(), ErrorKind::Value, std::string(name) + " must be writeable");
  require_aligned(a, name);
  return static_cast<float*>(a.mutable_data());
}

}  // namespace cnnkit::python
