#include "python/bindings.h"
#include "python/common.h"

namespace cnnkit::python {

void bind_pool(py::module_& m) { (void)m; }

}  // namespace cnnkit::python
