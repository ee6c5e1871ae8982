// The plan's direct convolution with AVX2: 8 output channels x 1 row x up to
// 8 positions (8 accumulators, up to 5 weights and a broadcast in the 16 ymm);
// on planes at most 4 wide, 3 rows x up to 4 positions (12 accumulators),
// where one row would leave only 4.
#include "cpu/plan/plan_direct_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx2) {
  if (p.out_w <= 4 && p.out_h >= 2) {
    plan_direct_dispatch<Avx2, 4, 3>(p, c, x, e, y, layout);
  } else {
    plan_direct_dispatch<Avx2, 8, 1>(p, c, x, e, y, layout);
  }
}

}  // namespace cnnkit
