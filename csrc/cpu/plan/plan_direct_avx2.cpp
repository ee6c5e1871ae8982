// The plan's direct convolution with AVX2. Two or more blocks of 8 output
// channels: tiles of 2 blocks x 6 positions in tap order (12 accumulators,
// 2 weight vectors and a broadcast in the 16 ymm); 2 blocks x 2 rows x 3 on
// planes at most 4 wide. One block (LeNet's 6 channels): the column walk,
// 1 row x up to 12 positions (12 accumulators, 3 weights and a broadcast),
// or 3 rows x up to 4 on planes at most 4 wide.
#include "cpu/plan/plan_direct_impl.h"
#include "cpu/plan/plan_winograd_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx2) {
  if (c.winograd) {
    if (plan_winograd_tile(p) == 6) return plan_winograd_run<Avx2, 6, 2, 6>(p, c, x, e, y, layout);
    return plan_winograd_run<Avx2, 6, 2, 4>(p, c, x, e, y, layout);
  }
  const bool narrow = p.out_w <= 4 && p.out_h >= 2;
  if (c.blocks >= 2) {
    if (narrow) return plan_direct_dispatch<Avx2, 2, 3, 2>(p, c, x, e, y, layout);
    return plan_direct_dispatch<Avx2, 2, 6, 1>(p, c, x, e, y, layout);
  }
  if (narrow) return plan_direct_dispatch<Avx2, 1, 4, 3>(p, c, x, e, y, layout);
  plan_direct_dispatch<Avx2, 1, 12, 1>(p, c, x, e, y, layout);
}

}  // namespace cnnkit
