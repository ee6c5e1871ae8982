// Activations and PReLU. `reference=True` runs the serial reference kernels (for tests).
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>

#include "cnnkit/act.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

ActParams make_params(const std::string& name, float alpha, float beta, float threshold,
                      float min_val, float max_val) {
  ActParams p;
  p.kind = parse_activation(name.c_str());
  p.alpha = alpha;
  p.beta = beta;
  p.threshold = threshold;
  p.min_val = min_val;
  p.max_val = max_val;
  validate(p);
  return p;
}

void require_same_shape(const py::array& a, const char* a_name, const py::array& b,
                        const char* b_name) {
  CNNKIT_CHECK(shape_of(a) == shape_of(b), ErrorKind::Value,
        std::string(a_name) + " and " + b_name + " must have the same shape");
}

// PyTorch's channel axis is 1; below 2-D there is a single channel.
PreluShape prelu_shape(const py::array& x, const py::array& weight) {
  require_ndim(weight, 1, "weight");
  PreluShape s;
  const std::vector<int64_t> shape = shape_of(x);
  s.outer = x.ndim() >= 2 ? shape[0] : 1;
  s.channels = x.ndim() >= 2 ? shape[1] : 1;
  s.inner = 1;
  for (size_t d = x.ndim() >= 2 ? 2 : 0; d < shape.size(); ++d) s.inner *= shape[d];
  s.weight_count = weight.shape(0);
  CNNKIT_CHECK(s.weight_count == 1 || s.weight_count == s.channels, ErrorKind::Value,
        "prelu: weight must have 1 or " + std::to_string(s.channels) +
            " (input.shape[1]) elements, got " + std::to_string(s.weight_count));
  return s;
}

// The array an elementwise op writes: `out` when given (it may be an input
// itself, which the kernels allow: the in-place forms), else a new one of the
// input's shape.
std::pair<py::array, float*> elementwise_output(const py::array& input, std::optional<py::array> out) {
  py::array y = out ? *out : py::array(new_float_array(shape_of(input)));
  float* data = out ? writable_floats(y, "out") : static_cast<float*>(y.mutable_data());
  CNNKIT_CHECK(shape_of(y) == shape_of(input), ErrorKind::Value, "out must have the input's shape");
  return {y, data};
}

}  // namespace

void bind_act(py::module_& m) {
  m.def(
      "activation",
      [](const std::string& name, FloatArray x, float alpha, float beta, float threshold,
         float min_val, float max_val, std::optional<py::array> out, bool reference) {
        const ActParams p = make_params(name, alpha, beta, threshold, min_val, max_val);
        auto [y, py_] = elementwise_output(x, std::move(out));
        const float* px = x.data();
        const int64_t n = x.size();
        {
          py::gil_scoped_release release;
          (reference ? activation_forward_reference : activation_forward)(p, px, py_, n);
        }
        return y;
      },
      py::arg("name"), py::arg("input"), py::arg("alpha") = 0.0f, py::arg("beta") = 1.0f,
      py::arg("threshold") = 20.0f, py::arg("min_val") = -1.0f, py::arg("max_val") = 1.0f,
      py::arg("out") = py::none(), py::arg("reference") = false);

  m.def(
      "activation_backward",
      [](const std::string& name, FloatArray grad_output, FloatArray x, float alpha, float beta,
         float threshold, float min_val, float max_val, bool reference) {
        const ActParams p = make_params(name, alpha, beta, threshold, min_val, max_val);
        require_same_shape(grad_output, "grad_output", x, "input");
        FloatArray dx = new_float_array(shape_of(x));
        const float* pdy = grad_output.data();
        const float* px = x.data();
        float* pdx = dx.mutable_data();
        const int64_t n = x.size();
        {
          py::gil_scoped_release release;
          (reference ? activation_backward_reference : activation_backward)(p, pdy, px, pdx, n);
        }
        return dx;
      },
      py::arg("name"), py::arg("grad_output"), py::arg("input"), py::arg("alpha") = 0.0f,
      py::arg("beta") = 1.0f, py::arg("threshold") = 20.0f, py::arg("min_val") = -1.0f,
      py::arg("max_val") = 1.0f, py::arg("reference") = false);

  m.def(
      "add",
      [](FloatArray a, FloatArray b, bool relu, std::optional<py::array> out, bool reference) {
        require_same_shape(a, "input", b, "other");
        auto [y, py_] = elementwise_output(a, std::move(out));
        const float* pa = a.data();
        const float* pb = b.data();
        const int64_t n = a.size();
        {
          py::gil_scoped_release release;
          (reference ? elementwise_add_reference : elementwise_add)(pa, pb, py_, n, relu);
        }
        return y;
      },
      py::arg("input"), py::arg("other"), py::arg("relu") = false, py::arg("out") = py::none(),
      py::arg("reference") = false);

  m.def(
      "activation_implementation",
      [](const std::string& name) {
        return std::string(activation_implementation(make_params(name, 0.0f, 1.0f, 20.0f, -1.0f, 1.0f)));
      },
      py::arg("name"));

  m.def(
      "prelu",
      [](FloatArray x, FloatArray weight, bool reference) {
        const PreluShape s = prelu_shape(x, weight);
        FloatArray y = new_float_array(shape_of(x));
        const float* px = x.data();
        const float* pw = weight.data();
        float* py_ = y.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? prelu_forward_reference : prelu_forward)(s, px, pw, py_);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("reference") = false);

  m.def(
      "prelu_backward",
      [](FloatArray grad_output, FloatArray x, FloatArray weight, bool reference) {
        const PreluShape s = prelu_shape(x, weight);
        require_same_shape(grad_output, "grad_output", x, "input");
        FloatArray dx = new_float_array(shape_of(x));
        FloatArray dw = new_float_array(shape_of(weight));
        const float* pdy = grad_output.data();
        const float* px = x.data();
        const float* pw = weight.data();
        float* pdx = dx.mutable_data();
        float* pdw = dw.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? prelu_backward_reference : prelu_backward)(s, pdy, px, pw, pdx, pdw);
        }
        return std::make_pair(dx, dw);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("reference") = false);
}

}  // namespace cnnkit::python
