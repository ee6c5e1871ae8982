// conv2d forward and backward. The Python layer has normalised the arguments
// (pairs, padding as top/bottom/left/right, algo); every shape is validated
// again here by make_conv2d_params before anything is allocated.
#include <pybind11/stl.h>

#include <array>
#include <optional>

#include "cnnkit/conv.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

using HwPair = std::array<int64_t, 2>;  // (height, width)
using Pads = std::array<int64_t, 4>;  // top, bottom, left, right

Conv2dParams params_for(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                        const HwPair& stride, const Pads& pad, const HwPair& dilation, int64_t groups) {
  CNNKIT_CHECK(x.size() == 4, ErrorKind::Value, "conv2d: input must be 4-D (N, C, H, W), got shape " + shape_str(x));
  CNNKIT_CHECK(w.size() == 4, ErrorKind::Value,
        "conv2d: weight must be 4-D (out, in/groups, kh, kw), got shape " + shape_str(w));
  return make_conv2d_params(x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3], groups, stride[0],
                            stride[1], pad[0], pad[1], pad[2], pad[3], dilation[0], dilation[1]);
}

// algo is "auto", "direct", "im2col" or "reference", or (for tests and
// benchmarks, never through cnnkit.functional) the name of one of the call's
// conv2d_candidates, which runs that implementation alone.
bool names_an_algo(const std::string& name) {
  return name == "auto" || name == "direct" || name == "im2col" || name == "reference";
}

FloatArray forward(FloatArray x, FloatArray w, std::optional<FloatArray> bias, HwPair stride,
                   Pads pad, HwPair dilation, int64_t groups, const std::string& algo_name) {
  const bool named = !names_an_algo(algo_name);
  const ConvAlgo algo = named ? ConvAlgo::Auto : parse_conv_algo(algo_name.c_str());
  const Conv2dParams p = params_for(shape_of(x), shape_of(w), stride, pad, dilation, groups);
  const float* pb = nullptr;
  if (bias) {
    CNNKIT_CHECK(bias->ndim() == 1 && bias->shape(0) == p.out_channels, ErrorKind::Value,
          "conv2d: bias must have shape (" + std::to_string(p.out_channels) +
              ",) to match weight.shape[0], got " + shape_str(shape_of(*bias)));
    pb = bias->data();
  }
  FloatArray y = new_float_array({p.batch, p.out_channels, p.out_h, p.out_w});
  const float* px = x.data();
  const float* pw = w.data();
  float* py = y.mutable_data();
  {
    py::gil_scoped_release release;
    if (named) {
      conv2d_forward_candidate(p, algo_name.c_str(), px, pw, pb, py);
    } else {
      conv2d_forward(p, px, pw, pb, py, algo);
    }
  }
  return y;
}

py::tuple backward(FloatArray dy, FloatArray x, FloatArray w, HwPair stride, Pads pad, HwPair dilation,
                   int64_t groups, bool input_grad, bool weight_grad, bool bias_grad,
                   const std::string& algo_name) {
  const bool named = !names_an_algo(algo_name);
  const ConvAlgo algo = named ? ConvAlgo::Auto : parse_conv_algo(algo_name.c_str());
  const Conv2dParams p = params_for(shape_of(x), shape_of(w), stride, pad, dilation, groups);
  const std::vector<int64_t> expected = {p.batch, p.out_channels, p.out_h, p.out_w};
  CNNKIT_CHECK(shape_of(dy) == expected, ErrorKind::Value,
        "conv2d_backward: grad_output must have the conv2d output shape " + shape_str(expected) +
            ", got " + shape_str(shape_of(dy)));
  std::optional<FloatArray> dx, dw, db;
  if (input_grad) dx = new_float_array(shape_of(x));
  if (weight_grad) dw = new_float_array(shape_of(w));
  if (bias_grad) db = new_float_array({p.out_channels});
  const float* pdy = dy.data();
  const float* px = x.data();
  const float* pw = w.data();
  float* pdx = dx ? dx->mutable_data() : nullptr;
  float* pdw = dw ? dw->mutable_data() : nullptr;
  float* pdb = db ? db->mutable_data() : nullptr;
  if (pdx != nullptr || pdw != nullptr || pdb != nullptr) {
    py::gil_scoped_release release;
    if (named) {
      conv2d_backward_candidate(p, algo_name.c_str(), pdy, px, pw, pdx, pdw, pdb);
    } else {
      conv2d_backward(p, pdy, px, pw, pdx, pdw, pdb, algo);
    }
  }
  auto or_none = [](std::optional<FloatArray>& a) -> py::object {
    return a ? py::object(*a) : py::object(py::none());
  };
  return py::make_tuple(or_none(dx), or_none(dw), or_none(db));
}

std::string implementation(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape,
                           HwPair stride, Pads pad, HwPair dilation, int64_t groups,
                           const std::string& algo_name, bool backward) {
  const ConvAlgo algo = parse_conv_algo(algo_name.c_str());
  const Conv2dParams p = params_for(x_shape, w_shape, stride, pad, dilation, groups);
  return backward ? conv2d_backward_implementation(p, algo) : conv2d_forward_implementation(p, algo);
}

std::vector<std::string> candidates(const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape,
                                    HwPair stride, Pads pad, HwPair dilation, int64_t groups, bool backward) {
  return conv2d_candidates(params_for(x_shape, w_shape, stride, pad, dilation, groups), backward);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d", &forward, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("algo"));
  m.def("conv2d_backward", &backward, py::arg("grad_output"), py::arg("input"), py::arg("weight"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("input_grad"), py::arg("weight_grad"), py::arg("bias_grad"), py::arg("algo"));
  // Which kernel a call with these shapes would run: its name in the dispatch
  // lists of cpu/conv/dispatch.cpp ("direct_walk_avx512", "kvec_avx2", "im2col", ...).
  m.def("conv2d_implementation", &implementation, py::arg("input_shape"), py::arg("weight_shape"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("algo"), py::arg("backward") = false);
  // The implementations algo="auto" chooses among (and times, when autotuning)
  // for a call with these shapes, the heuristic's pick first.
  m.def("conv2d_candidates", &candidates, py::arg("input_shape"), py::arg("weight_shape"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("backward") = false);
}

}  // namespace cnnkit::python
