#include <string>

#include "cnnkit/gemm.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

std::string shape_text(int64_t rows, int64_t cols) {
  return "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
}

// Checks `out` as sgemm's C: float32, writeable, shape (M, N), unit column
// stride and a row stride of at least N floats. Rows may be further apart
// than N (a column slice of a wider array), which exercises ldc > N.
// Returns ldc.
int64_t output_row_stride(py::array& out, int64_t M, int64_t N) {
  if (!py::isinstance<py::array_t<float>>(out) || out.dtype().kind() != 'f' || out.itemsize() != 4) {
    fail(ErrorKind::Type, "out must be a float32 array");
  }
  CNNKIT_CHECK(out.writeable(), ErrorKind::Value, "out must be writeable");
  require_aligned(out, "out");
  require_ndim(out, 2, "out");
  CNNKIT_CHECK(out.shape(0) == M && out.shape(1) == N, ErrorKind::Value,
        "out must have shape " + shape_text(M, N) + ", got " + shape_text(out.shape(0), out.shape(1)));
  const int64_t item = static_cast<int64_t>(sizeof(float));
  const int64_t col_stride = out.strides(1);
  const int64_t row_stride = out.strides(0);
  CNNKIT_CHECK(N <= 1 || col_stride == item, ErrorKind::Value, "out must have contiguous rows");
  CNNKIT_CHECK(M <= 1 || (row_stride % item == 0 && row_stride / item >= N), ErrorKind::Value,
        "out rows must not overlap and must be whole floats apart");
  return M <= 1 ? N : row_stride / item;
}

// The product's C: `out` checked as output_row_stride does (setting ldc), or
// a new (M, N) array, for which beta becomes 0.
py::array output_or_new(const py::object& out, int64_t M, int64_t N, float& beta, int64_t& ldc) {
  if (out.is_none()) {
    beta = 0.0f;
    ldc = N;
    return new_float_array({M, N});
  }
  CNNKIT_CHECK(py::isinstance<py::array>(out), ErrorKind::Type, "out must be a float32 array");
  py::array c = py::reinterpret_borrow<py::array>(out);
  ldc = output_row_stride(c, M, N);
  return c;
}

}  // namespace

// sgemm(a, b, trans_a, trans_b, reference, alpha, beta, out): exposed for tests and benchmarks.
// Without `out`: returns alpha * op(a) @ op(b) in a new array (beta is ignored).
// With `out`: out = alpha * op(a) @ op(b) + beta * out, in place; beta == 0 never reads out.
// `out` must not overlap a or b.
void bind_gemm(py::module_& m) {
  m.def(
      "sgemm",
      [](FloatArray a, FloatArray b, bool trans_a, bool trans_b, bool reference, float alpha,
         float beta, py::object out) -> py::object {
        require_ndim(a, 2, "a");
        require_ndim(b, 2, "b");
        const int64_t M = trans_a ? a.shape(1) : a.shape(0);
        const int64_t K = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0);
        const int64_t N = trans_b ? b.shape(0) : b.shape(1);
        CNNKIT_CHECK(K == Kb, ErrorKind::Value,
              "sgemm: inner dimensions differ: a gives " + std::to_string(K) + ", b gives " +
                  std::to_string(Kb));
        int64_t ldc = N;
        py::array c = output_or_new(out, M, N, beta, ldc);
        const float* pa = a.data();
        const float* pb = b.data();
        float* pc = static_cast<float*>(c.mutable_data());
        {
          py::gil_scoped_release release;
          auto fn = reference ? sgemm_reference : sgemm;
          fn(trans_a, trans_b, M, N, K, alpha, pa, a.shape(1), pb, b.shape(1), beta, pc, ldc);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("reference") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
      py::arg("out") = py::none());
  // The implementation sgemm picks now (ISA cap included) for a product of these sizes.
  m.def(
      "sgemm_implementation",
      [](int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
        return std::string(sgemm_implementation(m, n, k, trans_a, trans_b));
      },
      py::arg("m"), py::arg("n") = INT64_MAX, py::arg("k") = INT64_MAX, py::arg("trans_a") = false,
      py::arg("trans_b") = false);
  // A matrix packed once for many products (a layer's weights), by the kernel
  // the ISA cap selects now; see cnnkit/gemm.h.
  py::class_<PackedMatrix>(m, "PackedMatrix")
      .def(py::init([](FloatArray a, bool trans_a) {
             require_ndim(a, 2, "a");
             const int64_t M = trans_a ? a.shape(1) : a.shape(0);
             const int64_t K = trans_a ? a.shape(0) : a.shape(1);
             const float* pa = a.data();
             py::gil_scoped_release release;
             return new PackedMatrix(trans_a, M, K, pa, a.shape(1));
           }),
           py::arg("a"), py::arg("trans_a") = false)
      .def_property_readonly("rows", &PackedMatrix::rows)
      .def_property_readonly("depth", &PackedMatrix::depth)
      .def_property_readonly("kernel", [](const PackedMatrix& p) { return std::string(p.kernel()); })
      .def("usable", &PackedMatrix::usable);
  // sgemm_packed(a, b, trans_b, alpha, beta, out): sgemm's contract with op(A) the packed matrix.
  m.def(
      "sgemm_packed",
      [](const PackedMatrix& a, FloatArray b, bool trans_b, float alpha, float beta, py::object out) -> py::object {
        require_ndim(b, 2, "b");
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0);
        const int64_t N = trans_b ? b.shape(0) : b.shape(1);
        CNNKIT_CHECK(a.depth() == Kb, ErrorKind::Value,
                     "sgemm_packed: inner dimensions differ: a gives " + std::to_string(a.depth()) + ", b gives " +
                         std::to_string(Kb));
        int64_t ldc = N;
        py::array c = output_or_new(out, a.rows(), N, beta, ldc);
        const float* pb = b.data();
        float* pc = static_cast<float*>(c.mutable_data());
        {
          py::gil_scoped_release release;
          sgemm_packed(a, trans_b, N, alpha, pb, b.shape(1), beta, pc, ldc);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
      py::arg("out") = py::none());
}

}  // namespace cnnkit::python
