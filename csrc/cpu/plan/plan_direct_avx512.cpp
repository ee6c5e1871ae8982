// The plan's direct convolution with AVX-512: 16 output channels x 2 rows x
// up to 12 positions (24 accumulators, up to 5 weights and a broadcast in the
// 32 zmm).
#include "cpu/plan/plan_direct_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx512) { plan_direct_dispatch<Avx512, 12, 2>(p, c, x, e, y); }

}  // namespace cnnkit
