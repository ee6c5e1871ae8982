// Direct convolution walking input rows (direct_walk_impl.h) with AVX2: one
// vector (8 channels) x up to 14 positions, 14 accumulators and a broadcast,
// the weights read as memory operands. Against 10 positions with the weights
// in registers (forward, 2 threads, one process): 64x32x14x14 k64 5x5 pad 2
// 1.16 (its input gradient: backward 1.12), ResNet 14x14 3x3 1.22, 28-wide
// 5x5 1.05, 3x3 at 28-112 wide 1.00-1.02; 3x3 rows longer than 14 keep the
// 10-position tile (56 wide: 0.98 with 14).
#include "cpu/conv/direct_walk_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx2) {
  switch (p.kernel_w) {
    case 3:
      if (p.out_w > 14) {
        conv2d_forward_walk<Avx2, 1, 10, 3, 1>(p, plan, x, y);
      } else {
        conv2d_forward_walk<Avx2, 1, 14, 3, 1>(p, plan, x, y);
      }
      break;
    case 5: conv2d_forward_walk<Avx2, 1, 14, 5, 1>(p, plan, x, y); break;
    default: conv2d_forward_walk<Avx2, 1, 14, 7, 1>(p, plan, x, y); break;
  }
}

}  // namespace cnnkit
