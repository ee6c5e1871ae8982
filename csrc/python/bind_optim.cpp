// Fused optimizer steps: one call per parameter group. `reference=True` runs
// the serial reference kernel (for tests).
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cnnkit/optim.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

OptimizerKind parse_kind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::Sgd;
  if (name == "adam") return OptimizerKind::Adam;
  if (name == "rmsprop") return OptimizerKind::RmsProp;
  if (name == "adagrad") return OptimizerKind::Adagrad;
  fail(ErrorKind::Value, "unknown optimizer '" + name + "' (sgd, adam, rmsprop or adagrad)");
}

std::string nth(const char* what, size_t k) { return std::string(what) + "[" + std::to_string(k) + "]"; }

}  // namespace

void bind_optim(py::module_& m) {
  m.def(
      "optimizer_step",
      [](const std::string& kind, const py::list& params, const py::list& grads,
         const py::list& states, const std::vector<int64_t>& steps, const std::vector<bool>& fresh,
         double lr, double weight_decay, double l1_decay, double momentum, double dampening,
         bool nesterov, double beta1, double beta2, bool amsgrad, bool decoupled, double eps,
         double alpha, bool centered, double lr_decay, bool reference) {
        OptimizerOptions o;
        o.kind = parse_kind(kind);
        o.lr = lr, o.weight_decay = weight_decay, o.l1_decay = l1_decay;
        o.momentum = momentum, o.dampening = dampening, o.nesterov = nesterov;
        o.beta1 = beta1, o.beta2 = beta2, o.amsgrad = amsgrad, o.decoupled = decoupled;
        o.eps = eps, o.alpha = alpha, o.centered = centered, o.lr_decay = lr_decay;
        const size_t count = params.size();
        CNNKIT_CHECK(grads.size() == count && states.size() == count && steps.size() == count &&
                         fresh.size() == count,
                     ErrorKind::Value,
                     "params, grads, states, steps and fresh must have one entry per parameter");
        std::vector<OptimizerTensor> tensors(count);
        // Held until the kernel is done: grads may be converted copies, the
        // other arrays are the caller's, written in place.
        std::vector<py::array> keep;
        for (size_t k = 0; k < count; ++k) {
          OptimizerTensor& t = tensors[k];
          py::array p = params[k].cast<py::array>();
          t.param = writable_floats(p, nth("params", k).c_str());
          t.n = static_cast<int64_t>(p.size());
          FloatArray g = FloatArray::ensure(grads[k]);
          CNNKIT_CHECK(g, ErrorKind::Type, nth("grads", k) + " must be a float array");
          CNNKIT_CHECK(static_cast<int64_t>(g.size()) == t.n && shape_of(g) == shape_of(p),
                       ErrorKind::Value, nth("grads", k) + " must have its parameter's shape");
          t.grad = g.data();
          const py::list buffers = states[k].cast<py::list>();
          CNNKIT_CHECK(buffers.size() <= 3, ErrorKind::Value,
                       nth("states", k) + " has more than 3 buffers");
          for (size_t s = 0; s < buffers.size(); ++s) {
            if (buffers[s].is_none()) continue;
            py::array b = buffers[s].cast<py::array>();
            const std::string name = nth("states", k) + "[" + std::to_string(s) + "]";
            t.state[s] = writable_floats(b, name.c_str());
            CNNKIT_CHECK(shape_of(b) == shape_of(p), ErrorKind::Value,
                         name + " must have its parameter's shape");
            keep.push_back(b);
          }
          t.step = steps[k];
          t.fresh = fresh[k];
          keep.push_back(p);
          keep.push_back(g);
        }
        validate(o, tensors.data(), static_cast<int64_t>(count));
        py::gil_scoped_release release;
        (reference ? optimizer_step_reference : optimizer_step)(o, tensors.data(),
                                                                static_cast<int64_t>(count));
      },
      py::arg("kind"), py::arg("params"), py::arg("grads"), py::arg("states"), py::arg("steps"),
      py::arg("fresh"), py::arg("lr"), py::arg("weight_decay") = 0.0,
      py::arg("l1_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
      py::arg("nesterov") = false, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
      py::arg("amsgrad") = false, py::arg("decoupled") = false, py::arg("eps") = 1e-8,
      py::arg("alpha") = 0.99, py::arg("centered") = false, py::arg("lr_decay") = 0.0,
      py::arg("reference") = false);

  m.def(
      "optimizer_implementation",
      [](const std::string& kind) {
        OptimizerOptions o;
        o.kind = parse_kind(kind);
        return std::string(optimizer_implementation(o));
      },
      py::arg("kind"));
}

}  // namespace cnnkit::python
