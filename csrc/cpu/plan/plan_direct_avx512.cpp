// The plan's direct convolution with AVX-512: 16 output channels x 2 rows x
// up to 12 positions (24 accumulators, up to 5 weights and a broadcast in the
// 32 zmm); on planes at most 6 wide, 4 rows x up to 6 positions, so that a
// 4x4 plane is one tile of 16 accumulators rather than two of 8, too few to
// keep the FMA units busy (vgg11's 512-channel 4x4 layers ran 1.5x longer);
// on rows of a multiple of 16 positions, 1 row x 16 positions, so that each
// 16x16 transpose of the tile's stores is full (2 x 11 of a 32-wide row
// leave 5 of every 16 transposed rows empty).
#include "cpu/plan/plan_direct_impl.h"
#include "cpu/plan/plan_winograd_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx512) {
  if (c.winograd) {
    if (plan_winograd_tile(p) == 6) return plan_winograd_run<Avx512, 12, 2, 6>(p, c, x, e, y, layout);
    return plan_winograd_run<Avx512, 12, 2, 4>(p, c, x, e, y, layout);
  }
  if (p.out_w <= 6 && p.out_h >= 3) {
    plan_direct_dispatch<Avx512, 1, 6, 4>(p, c, x, e, y, layout);
  } else if (p.out_w % 16 == 0) {
    plan_direct_dispatch<Avx512, 1, 16, 1, true>(p, c, x, e, y, layout);
  } else {
    plan_direct_dispatch<Avx512, 1, 12, 2>(p, c, x, e, y, layout);
  }
}

}  // namespace cnnkit
