#include "cnnkit/gemm.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {

// sgemm(a, b, trans_a, trans_b, reference) -> op(a) @ op(b); exposed for tests and benchmarks.
void bind_gemm(py::module_& m) {
  m.def(
      "sgemm",
      [](FloatArray a, FloatArray b, bool trans_a, bool trans_b, bool reference) {
        require_ndim(a, 2, "a");
        require_ndim(b, 2, "b");
        const int64_t M = trans_a ? a.shape(1) : a.shape(0);
        const int64_t K = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0);
        const int64_t N = trans_b ? b.shape(0) : b.shape(1);
        check(K == Kb, ErrorKind::Value,
              "sgemm: inner dimensions differ: a gives " + std::to_string(K) + ", b gives " +
                  std::to_string(Kb));
        FloatArray c = new_float_array({M, N});
        const float* pa = a.data();
        const float* pb = b.data();
        float* pc = c.mutable_data();
        {
          py::gil_scoped_release release;
          auto fn = reference ? sgemm_reference : sgemm;
          fn(trans_a, trans_b, M, N, K, 1.0f, pa, a.shape(1), pb, b.shape(1), 0.0f, pc, N);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("reference") = false);
}

}  // namespace cnnkit::python
