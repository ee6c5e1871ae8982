// Batch-norm bindings: (N, C, ...) arrays viewed as (N, C, S), running
// statistics updated in place in training, GIL released around the kernels.
// `reference=True` runs the plain two-pass versions (for tests).
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "cnnkit/norm.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

BatchNormShape norm_shape(const py::array& input, const char* op) {
  CNNKIT_CHECK(input.ndim() >= 2, ErrorKind::Value,
        std::string(op) + ": input must have at least 2 dimensions (N, C, ...), got " +
            std::to_string(input.ndim()));
  int64_t spatial = 1;
  for (py::ssize_t d = 2; d < input.ndim(); ++d) spatial = checked_mul(spatial, input.shape(d), "input size");
  return {input.shape(0), input.shape(1), spatial};
}

void require_channels(const py::array& a, int64_t channels, const char* op, const char* name) {
  CNNKIT_CHECK(a.ndim() == 1 && a.shape(0) == channels, ErrorKind::Value,
        std::string(op) + ": " + name + " must have shape (" + std::to_string(channels) +
            ",) to match the input's channels");
}

const float* optional_data(const std::optional<FloatArray>& a, int64_t channels, const char* op,
                           const char* name) {
  if (!a) return nullptr;
  require_channels(*a, channels, op, name);
  return a->data();
}

// Running statistics read in eval mode (any float array converts).
FloatArray read_stat(const py::object& obj, int64_t channels, const char* op, const char* name) {
  CNNKIT_CHECK(!obj.is_none(), ErrorKind::Value,
        std::string(op) + ": " + name + " is required in eval mode (training=False)");
  FloatArray a = obj.cast<FloatArray>();
  require_channels(a, channels, op, name);
  return a;
}

// A fused ReLU's output, given to a backward: the input's shape.
const float* relu_output_data(const std::optional<FloatArray>& relu_output, const py::array& input,
                              const char* op) {
  if (!relu_output) return nullptr;
  CNNKIT_CHECK(shape_of(*relu_output) == shape_of(input), ErrorKind::Value,
               std::string(op) + ": relu_output must have the input's shape");
  return relu_output->data();
}

FloatArray batch_norm(FloatArray input, py::object running_mean, py::object running_var,
                      std::optional<FloatArray> weight, std::optional<FloatArray> bias,
                      bool training, double momentum, double eps, bool reference, bool relu) {
  const char* op = "batch_norm";
  const BatchNormShape s = norm_shape(input, op);
  const float* w = optional_data(weight, s.channels, op, "weight");
  const float* b = optional_data(bias, s.channels, op, "bias");
  FloatArray out = new_float_array(shape_of(input));
  const float* x = input.data();
  float* y = out.mutable_data();
  if (training) {
    float* rm = nullptr;
    float* rv = nullptr;
    // Held here so the arrays outlive the kernel call.
    py::array rm_arr, rv_arr;
    if (!running_mean.is_none() || !running_var.is_none()) {
      CNNKIT_CHECK(!running_mean.is_none() && !running_var.is_none(), ErrorKind::Value,
            "batch_norm: running_mean and running_var must both be given or both be None");
      CNNKIT_CHECK(py::isinstance<py::array>(running_mean) && py::isinstance<py::array>(running_var),
            ErrorKind::Type, "batch_norm: running statistics must be numpy arrays");
      rm_arr = py::reinterpret_borrow<py::array>(running_mean);
      rv_arr = py::reinterpret_borrow<py::array>(running_var);
      rm = writable_floats(rm_arr, "running_mean");
      rv = writable_floats(rv_arr, "running_var");
      require_channels(rm_arr, s.channels, op, "running_mean");
      require_channels(rv_arr, s.channels, op, "running_var");
    }
    py::gil_scoped_release release;
    (reference ? batch_norm_training_reference : batch_norm_training)(s, x, w, b, rm, rv, momentum,
                                                                      eps, y, relu);
  } else {
    FloatArray rm = read_stat(running_mean, s.channels, op, "running_mean");
    FloatArray rv = read_stat(running_var, s.channels, op, "running_var");
    const float* pm = rm.data();
    const float* pv = rv.data();
    py::gil_scoped_release release;
    (reference ? batch_norm_inference_reference : batch_norm_inference)(s, x, pm, pv, w, b, eps,
                                                                        y, relu);
  }
  return out;
}

py::tuple batch_norm_backward(FloatArray grad_output, FloatArray input, py::object running_mean,
                              py::object running_var, std::optional<FloatArray> weight,
                              bool training, double eps, bool reference,
                              std::optional<FloatArray> relu_output) {
  const char* op = "batch_norm_backward";
  const BatchNormShape s = norm_shape(input, op);
  CNNKIT_CHECK(shape_of(grad_output) == shape_of(input), ErrorKind::Value,
        "batch_norm_backward: grad_output must have the input's shape");
  const float* mask = relu_output_data(relu_output, input, op);
  const float* w = optional_data(weight, s.channels, op, "weight");
  FloatArray grad_input = new_float_array(shape_of(input));
  py::object grad_weight = py::none(), grad_bias = py::none();
  float* gw = nullptr;
  float* gb = nullptr;
  if (weight) {
    FloatArray gw_arr = new_float_array({s.channels});
    FloatArray gb_arr = new_float_array({s.channels});
    gw = gw_arr.mutable_data();
    gb = gb_arr.mutable_data();
    grad_weight = gw_arr;
    grad_bias = gb_arr;
  }
  const float* dy = grad_output.data();
  const float* x = input.data();
  float* dx = grad_input.mutable_data();
  if (training) {
    py::gil_scoped_release release;
    (reference ? batch_norm_backward_training_reference : batch_norm_backward_training)(
        s, dy, x, w, eps, dx, gw, gb, mask);
  } else {
    FloatArray rm = read_stat(running_mean, s.channels, op, "running_mean");
    FloatArray rv = read_stat(running_var, s.channels, op, "running_var");
    const float* pm = rm.data();
    const float* pv = rv.data();
    py::gil_scoped_release release;
    (reference ? batch_norm_backward_inference_reference : batch_norm_backward_inference)(
        s, dy, x, pm, pv, w, eps, dx, gw, gb, mask);
  }
  return py::make_tuple(grad_input, grad_weight, grad_bias);
}

LrnShape lrn_shape(const py::array& x) {
  CNNKIT_CHECK(x.ndim() >= 3, ErrorKind::Value,
               "local_response_norm: input must have at least 3 dimensions (N, C, ...)");
  const std::vector<int64_t> shape = shape_of(x);
  LrnShape s;
  s.batch = shape[0];
  s.channels = shape[1];
  s.inner = 1;
  for (size_t d = 2; d < shape.size(); ++d) s.inner *= shape[d];
  return s;
}

LrnParams lrn_params(int64_t size, double alpha, double beta, double k) {
  LrnParams p;
  p.size = size, p.alpha = alpha, p.beta = beta, p.k = k;
  return p;
}

FloatArray lrn_forward(FloatArray x, int64_t size, double alpha, double beta, double k,
                       bool reference) {
  const LrnShape s = lrn_shape(x);
  const LrnParams p = lrn_params(size, alpha, beta, k);
  FloatArray y = new_float_array(shape_of(x));
  const float* px = x.data();
  float* py_ = y.mutable_data();
  py::gil_scoped_release release;
  (reference ? local_response_norm_reference : local_response_norm)(s, p, px, py_);
  return y;
}

FloatArray lrn_backward(FloatArray grad_output, FloatArray x, int64_t size, double alpha,
                        double beta, double k, bool reference) {
  const LrnShape s = lrn_shape(x);
  const LrnParams p = lrn_params(size, alpha, beta, k);
  CNNKIT_CHECK(shape_of(grad_output) == shape_of(x), ErrorKind::Value,
               "local_response_norm_backward: grad_output must have the input's shape");
  FloatArray dx = new_float_array(shape_of(x));
  const float* pg = grad_output.data();
  const float* px = x.data();
  float* pdx = dx.mutable_data();
  py::gil_scoped_release release;
  (reference ? local_response_norm_backward_reference : local_response_norm_backward)(s, p, pg, px,
                                                                                      pdx);
  return dx;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm", &batch_norm, py::arg("input"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("weight"), py::arg("bias"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"), py::arg("reference") = false, py::arg("relu") = false);
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("weight"), py::arg("training"),
        py::arg("eps"), py::arg("reference") = false, py::arg("relu_output") = py::none());
  m.def("batch_norm_implementation", [] { return std::string(batch_norm_implementation()); });
  m.def("local_response_norm", &lrn_forward, py::arg("input"), py::arg("size"), py::arg("alpha"),
        py::arg("beta"), py::arg("k"), py::arg("reference") = false);
  m.def("local_response_norm_backward", &lrn_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"),
        py::arg("reference") = false);
  m.def("local_response_norm_implementation",
        [] { return std::string(local_response_norm_implementation()); });
}

}  // namespace cnnkit::python
