// Local response norm built with AVX2; the loops are in lrn_impl.h.
#include "cpu/norm/kernels.h"
#include "cpu/norm/lrn_impl.h"

namespace cnnkit {

const LrnKernels lrn_avx2 = {lrn_forward_unit, lrn_backward_unit};

}  // namespace cnnkit
