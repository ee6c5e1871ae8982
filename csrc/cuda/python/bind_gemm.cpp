#include <algorithm>
#include <string>

#include "cnnkit/errors.h"
#include "cuda/common/host_exec.h"
#include "cuda/gemm/gemm.h"
#include "cuda/python/array.h"
#include "cuda/python/bindings.h"
#include "cuda/python/checked.h"

namespace cnnkit::cuda::python {

namespace {

bool is_reference(const std::string& algo) {
  CNNKIT_CHECK(algo == "tiled" || algo == "reference", ErrorKind::Value,
               "sgemm: algo must be 'tiled' or 'reference', got '" + algo + "'");
  return algo == "reference";
}

// The product's sizes from the shapes of a, b and c (each 2-D), or a ValueError naming the one
// that does not fit.
gemm::SgemmArgs sgemm_shapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                             const std::vector<int64_t>& c, bool trans_a, bool trans_b) {
  CNNKIT_CHECK(a.size() == 2 && b.size() == 2 && c.size() == 2, ErrorKind::Value,
               "sgemm: a, b and out must be 2-D");
  gemm::SgemmArgs p;
  p.trans_a = trans_a, p.trans_b = trans_b;
  p.M = trans_a ? a[1] : a[0];
  p.K = trans_a ? a[0] : a[1];
  p.N = trans_b ? b[0] : b[1];
  const int64_t kb = trans_b ? b[1] : b[0];
  CNNKIT_CHECK(kb == p.K, ErrorKind::Value,
               "sgemm: b has inner dimension " + std::to_string(kb) + ", a has " + std::to_string(p.K));
  CNNKIT_CHECK(c[0] == p.M && c[1] == p.N, ErrorKind::Value,
               "sgemm: out must be (" + std::to_string(p.M) + ", " + std::to_string(p.N) + ")");
  return p;
}

}  // namespace

void bind_gemm(py::module_& m, py::module_& emulate) {
  m.def(
      "sgemm",
      [](py::handle a, py::handle b, py::handle out, bool trans_a, bool trans_b, float alpha, float beta,
         const std::string& algo, uintptr_t stream) {
        const bool reference = is_reference(algo);
        const DeviceArray da = device_array(a, "sgemm", "a", "<f4");
        const DeviceArray db = device_array(b, "sgemm", "b", "<f4");
        const DeviceArray dc = device_array(out, "sgemm", "out", "<f4", true);
        gemm::SgemmArgs p = sgemm_shapes(da.shape, db.shape, dc.shape, trans_a, trans_b);
        p.a = floats(da), p.b = floats(db), p.c = floats(dc), p.alpha = alpha, p.beta = beta;
        DeviceScope scope(any_data({&dc, &da, &db}), "sgemm");
        py::gil_scoped_release release;
        gemm::sgemm(p, reference, as_stream(stream));
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("algo") = "tiled", py::arg("stream") = 0);

  emulate.def(
      "sgemm",
      [](HostFloats a, HostFloats b, HostFloats c, bool trans_a, bool trans_b, float alpha, float beta, const std::string& algo) {
        const bool reference = is_reference(algo);
        gemm::SgemmArgs p = sgemm_shapes(shape_of(a), shape_of(b), shape_of(c), trans_a, trans_b);
        HostFloats out = host_empty(shape_of(c));
        std::copy(c.data(), c.data() + c.size(), out.mutable_data());
        p.a = a.data(), p.b = b.data(), p.c = out.mutable_data(), p.alpha = alpha, p.beta = beta;
        HostExec ex;
        gemm::sgemm(ex, p, reference);
        return out;
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("algo") = "tiled");
}

}  // namespace cnnkit::cuda::python
