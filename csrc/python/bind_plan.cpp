// The native inference plan (cnnkit.plan builds it from a model; this is its
// private builder interface). Parameters are copied into the plan.
#include <pybind11/stl.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "cnnkit/plan.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;

// act = "" for none, else a name parse_activation takes.
Epilogue make_epilogue(int residual, const std::string& act, float alpha, float beta, float threshold) {
  Epilogue e;
  e.residual = residual;
  if (!act.empty()) {
    e.has_act = true;
    e.act.kind = parse_activation(act.c_str());
    e.act.alpha = alpha;
    e.act.beta = beta;
    e.act.threshold = threshold;
  }
  return e;
}

// The value `name` names among `choices`; else a Value error naming the
// argument `what` and every choice ("a", "b" or "c").
template <class E>
E named_choice(const char* what, const std::string& name,
               std::initializer_list<std::pair<const char*, E>> choices) {
  std::string names;
  size_t i = 0;
  for (const auto& [choice, value] : choices) {
    if (name == choice) return value;
    names += std::string(i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + "\"" + choice + "\"";
    ++i;
  }
  fail(ErrorKind::Value, std::string(what) + " must be " + names + ", got \"" + name + "\"");
}

void require_size(const FloatArray& a, int64_t count, const std::string& what) {
  CNNKIT_CHECK(a.size() == count, ErrorKind::Value,
               what + " must have " + std::to_string(count) + " elements, got " + std::to_string(a.size()));
}

const float* optional_data(const std::optional<FloatArray>& a, int64_t count, const std::string& what) {
  if (!a) return nullptr;
  require_size(*a, count, what);
  return a->data();
}

py::tuple shape_tuple(const ValueShape& s) { return py::make_tuple(s.c, s.h, s.w); }

// Whether tables[i][names[i]] (its `data` attribute where `attr` is not null)
// is still arrays[i] for every i: the plan's check, every call, that the
// model's weights are the ones it copied. In C: as Python maps over the 107
// sources of a ResNet-20 it cost 13 us a call, 2% of a batch-1 inference.
bool same_objects(const py::tuple& tables, const py::tuple& names, const py::tuple& arrays, PyObject* attr) {
  const Py_ssize_t count = PyTuple_GET_SIZE(tables.ptr());
  if (PyTuple_GET_SIZE(names.ptr()) != count || PyTuple_GET_SIZE(arrays.ptr()) != count) return false;
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* table = PyTuple_GET_ITEM(tables.ptr(), i);
    if (!PyDict_Check(table)) return false;
    PyObject* item = PyDict_GetItemWithError(table, PyTuple_GET_ITEM(names.ptr(), i));  // borrowed
    if (item == nullptr) {
      PyErr_Clear();
      return false;
    }
    if (attr == nullptr) {
      if (item != PyTuple_GET_ITEM(arrays.ptr(), i)) return false;
      continue;
    }
    PyObject* data = PyObject_GetAttr(item, attr);  // new reference
    if (data == nullptr) {
      PyErr_Clear();
      return false;
    }
    const bool same = data == PyTuple_GET_ITEM(arrays.ptr(), i);
    Py_DECREF(data);
    if (!same) return false;
  }
  return true;
}

}  // namespace

void bind_plan(py::module_& m) {
  m.def(
      "plan_sources_unchanged",
      [](const py::tuple& param_tables, const py::tuple& param_names, const py::tuple& params,
         const py::tuple& buffer_tables, const py::tuple& buffer_names, const py::tuple& buffers) {
        static PyObject* const data = PyUnicode_InternFromString("data");
        return same_objects(param_tables, param_names, params, data) &&
               same_objects(buffer_tables, buffer_names, buffers, nullptr);
      },
      py::arg("param_tables"), py::arg("param_names"), py::arg("params"), py::arg("buffer_tables"),
      py::arg("buffer_names"), py::arg("buffers"),
      "Whether each parameter table[name].data and buffer table[name] is still the array given "
      "(cnnkit.plan's check that a compiled model's weights were not replaced).");
  py::class_<InferencePlan>(m, "InferencePlan")
      .def(py::init([](int64_t c, int64_t h, int64_t w) { return new InferencePlan(ValueShape{c, h, w}); }),
           py::arg("channels"), py::arg("height"), py::arg("width"))
      .def(
          "add_conv",
          [](InferencePlan& plan, const std::string& name, int src, FloatArray weight,
             std::optional<FloatArray> bias, Pair stride, std::tuple<int64_t, int64_t, int64_t, int64_t> padding,
             Pair dilation, int64_t groups, int residual, const std::string& act, float alpha, float beta,
             float threshold) {
            require_ndim(weight, 4, (name + ": weight").c_str());
            const auto shape = shape_of(weight);
            const auto [top, bottom, left, right] = padding;
            return plan.add_conv(name, src, shape[0], shape[2], shape[3], groups, stride.first, stride.second, top,
                                 bottom, left, right, dilation.first, dilation.second, weight.data(),
                                 optional_data(bias, shape[0], name + ": bias"),
                                 make_epilogue(residual, act, alpha, beta, threshold));
          },
          py::arg("name"), py::arg("src"), py::arg("weight"), py::arg("bias"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("residual") = -1,
          py::arg("act") = "", py::arg("alpha") = 0.0f, py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f)
      .def(
          "add_linear",
          [](InferencePlan& plan, const std::string& name, int src, FloatArray weight,
             std::optional<FloatArray> bias, int residual, const std::string& act, float alpha, float beta,
             float threshold) {
            require_ndim(weight, 2, (name + ": weight").c_str());
            const int64_t out = weight.shape(0), in = weight.shape(1);
            const int64_t features = plan.value_shape(src).size();
            CNNKIT_CHECK(in == features, ErrorKind::Value,
                         name + ": in_features is " + std::to_string(in) + " but its input has " +
                             std::to_string(features) + " features per image");
            return plan.add_linear(name, src, out, weight.data(), optional_data(bias, out, name + ": bias"),
                                   make_epilogue(residual, act, alpha, beta, threshold));
          },
          py::arg("name"), py::arg("src"), py::arg("weight"), py::arg("bias"), py::arg("residual") = -1,
          py::arg("act") = "", py::arg("alpha") = 0.0f, py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f)
      .def(
          "add_max_pool",
          [](InferencePlan& plan, const std::string& name, int src, Pair kernel, Pair stride, Pair padding,
             Pair dilation, bool ceil_mode, int residual, const std::string& act, float alpha, float beta,
             float threshold) {
            return plan.add_max_pool(name, src, kernel.first, kernel.second, stride.first, stride.second,
                                     padding.first, padding.second, dilation.first, dilation.second, ceil_mode,
                                     make_epilogue(residual, act, alpha, beta, threshold));
          },
          py::arg("name"), py::arg("src"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
          py::arg("dilation"), py::arg("ceil_mode"), py::arg("residual") = -1, py::arg("act") = "",
          py::arg("alpha") = 0.0f, py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f)
      .def(
          "add_avg_pool",
          [](InferencePlan& plan, const std::string& name, int src, Pair kernel, Pair stride, Pair padding,
             bool ceil_mode, bool count_include_pad) {
            return plan.add_avg_pool(name, src, kernel.first, kernel.second, stride.first, stride.second,
                                     padding.first, padding.second, ceil_mode, count_include_pad);
          },
          py::arg("name"), py::arg("src"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
          py::arg("ceil_mode"), py::arg("count_include_pad"))
      .def("add_adaptive_avg_pool", &InferencePlan::add_adaptive_avg_pool, py::arg("name"), py::arg("src"),
           py::arg("out_h"), py::arg("out_w"))
      .def(
          "add_channel_affine",
          [](InferencePlan& plan, const std::string& name, int src, FloatArray scale, FloatArray shift,
             int residual, const std::string& act, float alpha, float beta, float threshold) {
            const int64_t c = plan.value_shape(src).c;
            require_size(scale, c, name + ": scale");
            require_size(shift, c, name + ": shift");
            return plan.add_channel_affine(name, src, scale.data(), shift.data(),
                                           make_epilogue(residual, act, alpha, beta, threshold));
          },
          py::arg("name"), py::arg("src"), py::arg("scale"), py::arg("shift"), py::arg("residual") = -1,
          py::arg("act") = "", py::arg("alpha") = 0.0f, py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f)
      .def("add_lrn", &InferencePlan::add_lrn, py::arg("name"), py::arg("src"), py::arg("size"), py::arg("alpha"),
           py::arg("beta"), py::arg("k"))
      .def(
          "add_elementwise",
          [](InferencePlan& plan, const std::string& name, int src, int residual, const std::string& act,
             float alpha, float beta, float threshold) {
            return plan.add_elementwise(name, src, make_epilogue(residual, act, alpha, beta, threshold));
          },
          py::arg("name"), py::arg("src"), py::arg("residual") = -1, py::arg("act") = "", py::arg("alpha") = 0.0f,
          py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f)
      .def(
          "set_conv_choice",
          [](InferencePlan& plan, const std::string& choice) {
            plan.set_conv_choice(named_choice<PlanConvChoice>("conv_algo", choice,
                                                              {{"measure", PlanConvChoice::Measure},
                                                               {"kernel", PlanConvChoice::Kernel},
                                                               {"gemm", PlanConvChoice::Gemm},
                                                               {"direct", PlanConvChoice::Direct},
                                                               {"direct_block_major", PlanConvChoice::DirectBlockMajor},
                                                               {"winograd", PlanConvChoice::Winograd}}));
          },
          py::arg("choice"))
      .def(
          "set_batch_order",
          [](InferencePlan& plan, const std::string& order) {
            plan.set_batch_order(named_choice<PlanBatchOrder>("batch_order", order,
                                                              {{"measure", PlanBatchOrder::Measure},
                                                               {"layer_major", PlanBatchOrder::LayerMajor},
                                                               {"image_major", PlanBatchOrder::ImageMajor}}));
          },
          py::arg("order"))
      .def(
          "set_value_layout",
          [](InferencePlan& plan, const std::string& layout) {
            plan.set_value_layout(named_choice<PlanLayoutChoice>("value_layout", layout,
                                                                 {{"measure", PlanLayoutChoice::Measure},
                                                                  {"plain", PlanLayoutChoice::Plain},
                                                                  {"blocked", PlanLayoutChoice::Blocked}}));
          },
          py::arg("layout"))
      .def("value_shape", [](const InferencePlan& plan, int v) { return shape_tuple(plan.value_shape(v)); },
           py::arg("value"))
      .def_property_readonly("output", &InferencePlan::output)
      .def_property_readonly("num_ops", &InferencePlan::num_ops)
      .def("describe", &InferencePlan::describe)
      .def(
          "run",
          [](InferencePlan& plan, FloatArray x, py::array out, bool profile) {
            const int64_t in_size = plan.value_shape(0).size();
            const int64_t out_size = plan.value_shape(plan.output()).size();
            CNNKIT_CHECK(x.ndim() >= 1 && x.size() == x.shape(0) * in_size, ErrorKind::Value,
                         "x must hold batch images of " + std::to_string(in_size) + " elements");
            const int64_t batch = x.shape(0);
            float* y = writable_floats(out, "out");
            CNNKIT_CHECK(out.size() == batch * out_size, ErrorKind::Value,
                         "out must have " + std::to_string(batch * out_size) + " elements, got " +
                             std::to_string(out.size()));
            const float* px = x.data();
            std::vector<double> seconds;
            {
              py::gil_scoped_release release;
              plan.run(px, y, batch, profile ? &seconds : nullptr);
            }
            return seconds;
          },
          py::arg("x"), py::arg("out"), py::arg("profile") = false);
}

}  // namespace cnnkit::python
