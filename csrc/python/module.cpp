// The private extension module cnnkit._C: build information, threads, ISA
// cap, and the op families' bindings.
#include <pybind11/stl.h>

#include "cnnkit/autotune.h"
#include "cnnkit/errors.h"
#include "cnnkit/gemm.h"
#include "cnnkit/isa.h"
#include "cnnkit/peak.h"
#include "cnnkit/threads.h"
#include "python/array_cache.h"
#include "python/bindings.h"
#include "python/common.h"
#include "python/translate_errors.h"

namespace py = pybind11;

namespace {

py::dict build_info() {
  using cnnkit::Isa;
  py::list compiled;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (cnnkit::isa_compiled(isa)) compiled.append(cnnkit::isa_name(isa));
  }
  py::dict info;
  info["compiled_isas"] = compiled;
  info["detected_isa"] = cnnkit::isa_name(cnnkit::detected_isa());
  info["max_isa"] = cnnkit::isa_name(cnnkit::max_isa());
  info["num_threads"] = cnnkit::num_threads();
  info["sgemm"] = cnnkit::sgemm_implementation();
  info["cuda"] = false;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cnnkit native core (private: use cnnkit.functional)";
  cnnkit::python::translate_errors();
  m.def("build_info", &build_info);
  m.def("num_threads", &cnnkit::num_threads);
  m.def("set_num_threads", &cnnkit::set_num_threads, py::arg("n"));
  m.def("deterministic", &cnnkit::deterministic);
  m.def("set_deterministic", &cnnkit::set_deterministic, py::arg("on"));
  m.def(
      "peak_gflops",
      [](int threads, double seconds) {
        CNNKIT_CHECK(threads >= 1 && seconds > 0, cnnkit::ErrorKind::Value,
                      "peak_gflops: threads must be >= 1 and seconds > 0");
        py::gil_scoped_release release;
        return cnnkit::peak_gflops(threads, seconds);
      },
      py::arg("threads"), py::arg("seconds") = 0.3);
  m.def("autotune_enabled", &cnnkit::autotune_enabled);
  m.def("autotune_setting", &cnnkit::autotune_setting);
  m.def("set_autotune", &cnnkit::set_autotune, py::arg("on"));
  m.def("autotune_cache_file", &cnnkit::autotune_cache_file);
  m.def("autotune_signature", &cnnkit::autotune_signature);
  m.def("autotune_clear", &cnnkit::autotune_clear, py::arg("disk"));
  m.def("autotune_entries", &cnnkit::autotune_entries);
  // The blocks kept for cnnkit's large output arrays (python/array_cache.h).
  m.def("empty_cache", &cnnkit::python::clear_array_cache);
  m.def("array_cache_bytes", &cnnkit::python::array_cache_bytes);
  m.def("max_isa", [] { return std::string(cnnkit::isa_name(cnnkit::max_isa())); });
  m.def("set_max_isa",
        [](const std::string& name) { cnnkit::set_max_isa(cnnkit::parse_isa(name)); },
        py::arg("isa"));
  cnnkit::python::bind_gemm(m);
  cnnkit::python::bind_conv(m);
  cnnkit::python::bind_pool(m);
  cnnkit::python::bind_norm(m);
  cnnkit::python::bind_act(m);
  cnnkit::python::bind_loss(m);
  cnnkit::python::bind_plan(m);
  cnnkit::python::bind_optim(m);
  cnnkit::python::bind_dropout(m);
}
