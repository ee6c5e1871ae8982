// Batch-norm passes 8 lanes wide with AVX2 + FMA; the algorithm is in vector_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/norm/vector_impl.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {

const BatchNormRangeKernels batch_norm_range_avx2 = {sums<Avx2>, normalise<Avx2>, input_grad<Avx2>};

}  // namespace cnnkit
