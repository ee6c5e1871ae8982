// Direct pooling built for avx2: the same loops, vectorised 8 floats wide.
#include "cpu/pool/direct_impl.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {

const PoolKernels pool_direct_avx2 = {max_forward, max_backward, avg_forward, avg_backward};

}  // namespace cnnkit
