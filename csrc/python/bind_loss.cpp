// Linear, softmax / log_softmax and cross-entropy. `reference=True` runs the
// serial reference kernels (for tests); linear's reference is sgemm's own.
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "cnnkit/linear.h"
#include "cnnkit/loss.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {
namespace {

using LabelArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast | kAligned>;

// input (*, in): the leading dims flatten into M rows.
int64_t linear_rows(const py::array& x, const py::array& weight) {
  CNNKIT_CHECK(x.ndim() >= 1, ErrorKind::Value, "linear: input must have at least 1 dimension, got 0");
  require_ndim(weight, 2, "weight");
  CNNKIT_CHECK(x.shape(x.ndim() - 1) == weight.shape(1), ErrorKind::Value,
        "linear: input's last dimension (" + std::to_string(x.shape(x.ndim() - 1)) +
            ") must equal weight.shape[1] (" + std::to_string(weight.shape(1)) + "); input " +
            shape_str(shape_of(x)) + ", weight " + shape_str(shape_of(weight)));
  int64_t rows = 1;
  for (py::ssize_t d = 0; d + 1 < x.ndim(); ++d) rows *= x.shape(d);
  return rows;
}

std::vector<int64_t> with_last(const py::array& x, int64_t last) {
  std::vector<int64_t> shape = shape_of(x);
  shape.back() = last;
  return shape;
}

SoftmaxShape softmax_shape(const py::array& x, int64_t dim) {
  const std::vector<int64_t> shape = shape_of(x);
  const int64_t nd = shape.empty() ? 1 : static_cast<int64_t>(shape.size());
  CNNKIT_CHECK(dim >= -nd && dim < nd, ErrorKind::Value,
        "dim must be in [" + std::to_string(-nd) + ", " + std::to_string(nd) + ") for a " +
            std::to_string(shape.size()) + "-D input, got " + std::to_string(dim));
  if (dim < 0) dim += nd;
  SoftmaxShape s{1, 1, 1};
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) s.outer *= shape[d];
    if (d == dim) s.axis = shape[d];
    if (d > dim) s.inner *= shape[d];
  }
  return s;
}

// Class indices must be integers: float labels would be truncated silently.
LabelArray labels(const py::array& target, const py::array& logits) {
  const char kind = target.dtype().kind();
  CNNKIT_CHECK(kind == 'i' || kind == 'u', ErrorKind::Type,
        "cross_entropy: target must be an integer array of class indices, got dtype " +
            std::string(py::str(target.dtype())));
  require_ndim(logits, 2, "input");
  CNNKIT_CHECK(target.ndim() == 1 && target.shape(0) == logits.shape(0), ErrorKind::Value,
        "cross_entropy: target must have shape (" + std::to_string(logits.shape(0)) +
            ",) for input " + shape_str(shape_of(logits)) + ", got " +
            shape_str(shape_of(target)));
  return LabelArray::ensure(target);
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def(
      "linear",
      [](FloatArray x, FloatArray weight, std::optional<FloatArray> bias) {
        const int64_t M = linear_rows(x, weight);
        const int64_t in = weight.shape(1), out = weight.shape(0);
        if (bias) {
          CNNKIT_CHECK(bias->ndim() == 1 && bias->shape(0) == out, ErrorKind::Value,
                "linear: bias must have shape (" + std::to_string(out) + ",), got " +
                    shape_str(shape_of(*bias)));
        }
        FloatArray y = new_float_array(with_last(x, out));
        const float* px = x.data();
        const float* pw = weight.data();
        const float* pb = bias ? bias->data() : nullptr;
        float* py_ = y.mutable_data();
        {
          py::gil_scoped_release release;
          linear_forward(px, pw, pb, py_, M, in, out);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none());

  m.def(
      "linear_backward",
      [](FloatArray dy, FloatArray x, FloatArray weight, bool input_grad, bool weight_grad,
         bool bias_grad) {
        const int64_t M = linear_rows(x, weight);
        const int64_t in = weight.shape(1), out = weight.shape(0);
        CNNKIT_CHECK(shape_of(dy) == with_last(x, out), ErrorKind::Value,
              "linear_backward: grad_output must have shape " + shape_str(with_last(x, out)) +
                  ", got " + shape_str(shape_of(dy)));
        std::optional<FloatArray> dx, dw, db;
        if (input_grad) dx = new_float_array(shape_of(x));
        if (weight_grad) dw = new_float_array(shape_of(weight));
        if (bias_grad) db = new_float_array({out});
        const float* pdy = dy.data();
        const float* px = x.data();
        const float* pw = weight.data();
        float* pdx = dx ? dx->mutable_data() : nullptr;
        float* pdw = dw ? dw->mutable_data() : nullptr;
        float* pdb = db ? db->mutable_data() : nullptr;
        {
          py::gil_scoped_release release;
          linear_backward(pdy, px, pw, M, in, out, pdx, pdw, pdb);
        }
        return py::make_tuple(dx ? py::object(*dx) : py::none(), dw ? py::object(*dw) : py::none(),
                              db ? py::object(*db) : py::none());
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("input_grad") = true,
      py::arg("weight_grad") = true, py::arg("bias_grad") = true);

  m.def(
      "softmax",
      [](FloatArray x, int64_t dim, bool log, bool reference) {
        const SoftmaxShape s = softmax_shape(x, dim);
        FloatArray y = new_float_array(shape_of(x));
        const float* px = x.data();
        float* py_ = y.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? softmax_forward_reference : softmax_forward)(s, log, px, py_);
        }
        return y;
      },
      py::arg("input"), py::arg("dim"), py::arg("log") = false, py::arg("reference") = false);

  m.def(
      "softmax_backward",
      [](FloatArray dy, FloatArray y, int64_t dim, bool log, bool reference) {
        const SoftmaxShape s = softmax_shape(y, dim);
        CNNKIT_CHECK(shape_of(dy) == shape_of(y), ErrorKind::Value,
              "grad_output " + shape_str(shape_of(dy)) + " and output " +
                  shape_str(shape_of(y)) + " must have the same shape");
        FloatArray dx = new_float_array(shape_of(y));
        const float* pdy = dy.data();
        const float* py_ = y.data();
        float* pdx = dx.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? softmax_backward_reference : softmax_backward)(s, log, pdy, py_, pdx);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("output"), py::arg("dim"), py::arg("log") = false,
      py::arg("reference") = false);

  m.def(
      "softmax_implementation",
      [](FloatArray x, int64_t dim) {
        return std::string(softmax_implementation(softmax_shape(x, dim)));
      },
      py::arg("input"), py::arg("dim"));

  m.def(
      "cross_entropy",
      [](FloatArray logits, py::array target, const std::string& reduction, int64_t ignore_index,
         bool reference) {
        const Reduction r = parse_reduction(reduction);
        LabelArray t = labels(target, logits);
        const int64_t N = logits.shape(0), C = logits.shape(1);
        FloatArray out = new_float_array(r == Reduction::None ? std::vector<int64_t>{N}
                                                              : std::vector<int64_t>{});
        const float* px = logits.data();
        const int64_t* pt = t.data();
        float* po = out.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? cross_entropy_forward_reference : cross_entropy_forward)(
              px, pt, N, C, ignore_index, r, po);
        }
        return out;
      },
      py::arg("input"), py::arg("target"), py::arg("reduction") = "mean",
      py::arg("ignore_index") = -100, py::arg("reference") = false);

  m.def(
      "cross_entropy_backward",
      [](FloatArray logits, py::array target, FloatArray grad_output, const std::string& reduction,
         int64_t ignore_index, bool reference) {
        const Reduction r = parse_reduction(reduction);
        LabelArray t = labels(target, logits);
        const int64_t N = logits.shape(0), C = logits.shape(1);
        if (r == Reduction::None) {
          CNNKIT_CHECK(grad_output.ndim() == 1 && grad_output.shape(0) == N, ErrorKind::Value,
                "cross_entropy_backward: grad_output must have shape (" + std::to_string(N) +
                    ",) with reduction='none', got " + shape_str(shape_of(grad_output)));
        } else {
          CNNKIT_CHECK(grad_output.size() == 1 && grad_output.ndim() <= 1, ErrorKind::Value,
                "cross_entropy_backward: grad_output must be a scalar with reduction='" +
                    reduction + "', got shape " + shape_str(shape_of(grad_output)));
        }
        FloatArray dx = new_float_array({N, C});
        const float* px = logits.data();
        const int64_t* pt = t.data();
        const float* pg = grad_output.data();
        float* pdx = dx.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? cross_entropy_backward_reference : cross_entropy_backward)(
              px, pt, N, C, ignore_index, r, pg, pdx);
        }
        return dx;
      },
      py::arg("input"), py::arg("target"), py::arg("grad_output"), py::arg("reduction") = "mean",
      py::arg("ignore_index") = -100, py::arg("reference") = false);
}

}  // namespace cnnkit::python
