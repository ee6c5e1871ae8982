// Adaptive average pooling built without SIMD flags; the loops are in adaptive_impl.h.
#include "cpu/pool/adaptive_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {

const AdaptivePoolKernels adaptive_pool_scalar = {adaptive_forward_planes, adaptive_backward_planes};

}  // namespace cnnkit
