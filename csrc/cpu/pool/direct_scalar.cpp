// Direct pooling built for baseline x86-64 (SSE2 auto-vectorisation).
#include "cpu/pool/direct_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {

const PoolKernels pool_direct_scalar = {max_forward, max_backward, avg_forward, avg_backward};

}  // namespace cnnkit
