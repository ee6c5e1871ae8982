// Pooling bindings: NCHW arrays in, shapes validated by make_pool2d_shape,
// GIL released around the kernels. `reference=True` runs the plain loop
// versions (for tests).
#include <pybind11/stl.h>

#include <utility>

#include "cnnkit/pool.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;
using IndexArray = py::array_t<int64_t, py::array::c_style | kAligned>;

Pool2dShape pool_shape(const char* op, const std::vector<int64_t>& input_shape, Pair kernel,
                       Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
  CNNKIT_CHECK(input_shape.size() == 4, ErrorKind::Value,
        std::string(op) + ": input must be 4-D (N, C, H, W), got " +
            std::to_string(input_shape.size()) + " dimensions");
  for (int64_t d : input_shape) CNNKIT_CHECK(d >= 0, ErrorKind::Value, std::string(op) + ": negative size");
  const int64_t planes = checked_mul(input_shape[0], input_shape[1], "input size");
  checked_mul(checked_mul(planes, input_shape[2], "input size"), input_shape[3], "input size");
  return make_pool2d_shape(op, planes, input_shape[2], input_shape[3], kernel.first,
                           kernel.second, stride.first, stride.second, padding.first,
                           padding.second, dilation.first, dilation.second, ceil_mode);
}

std::vector<int64_t> output_shape(const std::vector<int64_t>& input_shape, const Pool2dShape& s) {
  return {input_shape[0], input_shape[1], s.out_h, s.out_w};
}

void require_shape(const py::array& a, const std::vector<int64_t>& shape, const char* op,
                   const char* name) {
  auto str = [](const std::vector<int64_t>& v) {
    std::string out = "(";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    return out + (v.size() == 1 ? ",)" : ")");
  };
  CNNKIT_CHECK(shape_of(a) == shape, ErrorKind::Value,
        std::string(op) + ": " + name + " must have shape " + str(shape) + ", got " +
            str(shape_of(a)));
}

py::tuple max_pool2d(FloatArray input, Pair kernel, Pair stride, Pair padding, Pair dilation,
                     bool ceil_mode, bool return_indices, bool reference) {
  const std::vector<int64_t> in_shape = shape_of(input);
  const Pool2dShape s = pool_shape("max_pool2d", in_shape, kernel, stride, padding, dilation,
                                   ceil_mode);
  const std::vector<int64_t> out_shape = output_shape(in_shape, s);
  FloatArray out = new_float_array(out_shape);
  py::object indices = py::none();
  int64_t* index_data = nullptr;
  if (return_indices) {
    IndexArray idx(std::vector<py::ssize_t>(out_shape.begin(), out_shape.end()));
    index_data = idx.mutable_data();
    indices = idx;
  }
  const float* x = input.data();
  float* y = out.mutable_data();
  {
    py::gil_scoped_release release;
    (reference ? max_pool2d_reference : cnnkit::max_pool2d)(s, x, y, index_data);
  }
  return py::make_tuple(out, indices);
}

FloatArray max_pool2d_backward(FloatArray grad_output, py::array indices,
                               std::vector<int64_t> input_shape, Pair kernel, Pair stride,
                               Pair padding, Pair dilation, bool ceil_mode, bool reference) {
  const Pool2dShape s = pool_shape("max_pool2d_backward", input_shape, kernel, stride, padding,
                                   dilation, ceil_mode);
  const std::vector<int64_t> out_shape = output_shape(input_shape, s);
  require_shape(grad_output, out_shape, "max_pool2d_backward", "grad_output");
  CNNKIT_CHECK(py::isinstance<py::array_t<int64_t>>(indices) && indices.dtype().kind() == 'i' &&
            indices.itemsize() == 8,
        ErrorKind::Type, "max_pool2d_backward: indices must be an int64 array");
  CNNKIT_CHECK((indices.flags() & py::array::c_style) != 0, ErrorKind::Value,
        "max_pool2d_backward: indices must be C-contiguous");
  require_shape(indices, out_shape, "max_pool2d_backward", "indices");
  FloatArray grad_input = new_float_array(input_shape);
  const float* g = grad_output.data();
  const IndexArray aligned = IndexArray::ensure(indices);  // a copy only where the view is misaligned
  const int64_t* idx = aligned.data();
  float* gi = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    (reference ? max_pool2d_backward_reference : cnnkit::max_pool2d_backward)(s, g, idx, gi);
  }
  return grad_input;
}

FloatArray avg_pool2d(FloatArray input, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
                      bool count_include_pad, bool reference) {
  const std::vector<int64_t> in_shape = shape_of(input);
  const Pool2dShape s = pool_shape("avg_pool2d", in_shape, kernel, stride, padding, {1, 1},
                                   ceil_mode);
  FloatArray out = new_float_array(output_shape(in_shape, s));
  const float* x = input.data();
  float* y = out.mutable_data();
  {
    py::gil_scoped_release release;
    (reference ? avg_pool2d_reference : cnnkit::avg_pool2d)(s, count_include_pad, x, y);
  }
  return out;
}

FloatArray avg_pool2d_backward(FloatArray grad_output, std::vector<int64_t> input_shape,
                               Pair kernel, Pair stride, Pair padding, bool ceil_mode,
                               bool count_include_pad, bool reference) {
  const Pool2dShape s = pool_shape("avg_pool2d_backward", input_shape, kernel, stride, padding,
                                   {1, 1}, ceil_mode);
  require_shape(grad_output, output_shape(input_shape, s), "avg_pool2d_backward", "grad_output");
  FloatArray grad_input = new_float_array(input_shape);
  const float* g = grad_output.data();
  float* gi = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    (reference ? avg_pool2d_backward_reference : cnnkit::avg_pool2d_backward)(
        s, count_include_pad, g, gi);
  }
  return grad_input;
}

AdaptivePoolShape adaptive_shape(const std::vector<int64_t>& in_shape, int64_t out_h,
                                 int64_t out_w) {
  CNNKIT_CHECK(in_shape.size() == 4, ErrorKind::Value,
               "adaptive_avg_pool2d: input must be 4-D (N, C, H, W)");
  for (int64_t d : in_shape) {
    CNNKIT_CHECK(d >= 0, ErrorKind::Value, "adaptive_avg_pool2d: negative size");
  }
  AdaptivePoolShape s;
  s.planes = checked_mul(in_shape[0], in_shape[1], "input size");
  checked_mul(checked_mul(s.planes, in_shape[2], "input size"), in_shape[3], "input size");
  checked_mul(checked_mul(s.planes, out_h, "output size"), out_w, "output size");
  s.in_h = in_shape[2], s.in_w = in_shape[3], s.out_h = out_h, s.out_w = out_w;
  return s;
}

FloatArray adaptive_avg_pool2d(FloatArray input, int64_t out_h, int64_t out_w, bool reference) {
  const std::vector<int64_t> in_shape = shape_of(input);
  const AdaptivePoolShape s = adaptive_shape(in_shape, out_h, out_w);
  FloatArray out = new_float_array({in_shape[0], in_shape[1], out_h, out_w});
  const float* px = input.data();
  float* py_ = out.mutable_data();
  py::gil_scoped_release release;
  (reference ? adaptive_avg_pool2d_reference : cnnkit::adaptive_avg_pool2d)(s, px, py_);
  return out;
}

FloatArray adaptive_avg_pool2d_backward(FloatArray grad_output, const std::vector<int64_t>& in_shape,
                                        bool reference) {
  CNNKIT_CHECK(grad_output.ndim() == 4, ErrorKind::Value,
               "adaptive_avg_pool2d_backward: grad_output must be 4-D");
  const std::vector<int64_t> g_shape = shape_of(grad_output);
  const AdaptivePoolShape s = adaptive_shape(in_shape, g_shape[2], g_shape[3]);
  require_shape(grad_output, {in_shape[0], in_shape[1], g_shape[2], g_shape[3]},
                "adaptive_avg_pool2d_backward", "grad_output");
  FloatArray grad_input = new_float_array(in_shape);
  const float* pg = grad_output.data();
  float* pdx = grad_input.mutable_data();
  py::gil_scoped_release release;
  (reference ? adaptive_avg_pool2d_backward_reference : cnnkit::adaptive_avg_pool2d_backward)(s, pg, pdx);
  return grad_input;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool2d", &max_pool2d, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), py::arg("return_indices"),
        py::arg("reference") = false);
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("ceil_mode"), py::arg("reference") = false);
  m.def("avg_pool2d", &avg_pool2d, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        py::arg("reference") = false);
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_output"),
        py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("reference") = false);
  m.def("pool2d_implementation", [] { return std::string(pool2d_implementation()); });
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d, py::arg("input"), py::arg("out_h"),
        py::arg("out_w"), py::arg("reference") = false);
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_output"),
        py::arg("input_shape"), py::arg("reference") = false);
  m.def("adaptive_pool2d_implementation",
        [] { return std::string(adaptive_pool2d_implementation()); });
}

}  // namespace cnnkit::python
