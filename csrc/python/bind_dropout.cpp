// Dropout with counter-based masks. `reference=True` runs the serial reference kernel (for tests).
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cnnkit/dropout.h"
#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {

void bind_dropout(py::module_& m) {
  m.def(
      "dropout",
      [](FloatArray x, double p, uint64_t key, bool channel, std::optional<py::array> out,
         bool reference) {
        const std::vector<int64_t> shape = shape_of(x);
        DropoutShape s;
        std::vector<int64_t> mask_shape = shape;
        if (channel) {
          CNNKIT_CHECK(shape.size() >= 2, ErrorKind::Value,
                       "dropout2d: input must have at least 2 dimensions (N, C, ...)");
          s.units = shape[0] * shape[1];
          s.inner = 1;
          for (size_t d = 2; d < shape.size(); ++d) {
            s.inner *= shape[d];
            mask_shape[d] = 1;
          }
        } else {
          s.units = static_cast<int64_t>(x.size());
        }
        py::array y = out ? *out : py::array(new_float_array(shape));
        float* py_ = out ? writable_floats(y, "out") : static_cast<float*>(y.mutable_data());
        CNNKIT_CHECK(shape_of(y) == shape, ErrorKind::Value, "out must have the input's shape");
        FloatArray mask = new_float_array(mask_shape);
        const float* px = x.data();
        float* pm = mask.mutable_data();
        {
          py::gil_scoped_release release;
          (reference ? dropout_forward_reference : dropout_forward)(s, px, py_, pm, p, key);
        }
        return std::make_pair(y, mask);
      },
      py::arg("input"), py::arg("p"), py::arg("key"), py::arg("channel") = false,
      py::arg("out") = py::none(), py::arg("reference") = false);

  m.def("dropout_implementation", [] { return std::string(dropout_implementation()); });
}

}  // namespace cnnkit::python
