// Local response norm built without SIMD flags; the loops are in lrn_impl.h.
#include "cpu/norm/kernels.h"
#include "cpu/norm/lrn_impl.h"

namespace cnnkit {

const LrnKernels lrn_scalar = {lrn_forward_unit, lrn_backward_unit};

}  // namespace cnnkit
