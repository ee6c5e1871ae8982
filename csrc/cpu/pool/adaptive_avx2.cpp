// Adaptive average pooling built with AVX2; the loops are in adaptive_impl.h.
#include "cpu/pool/adaptive_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {

const AdaptivePoolKernels adaptive_pool_avx2 = {adaptive_forward_planes, adaptive_backward_planes};

}  // namespace cnnkit
