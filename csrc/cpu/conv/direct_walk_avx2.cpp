// Direct convolution walking input rows (direct_walk_impl.h) with AVX2: one
// vector (8 channels) x up to 10 positions (10 accumulators, one broadcast;
// the kernel-row weights take the other registers or stay memory operands).
#include "cpu/conv/direct_walk_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx2) {
  switch (p.kernel_w) {
    case 3: conv2d_forward_walk<Avx2, 1, 10, 3, 1>(p, plan, x, y); break;
    case 5: conv2d_forward_walk<Avx2, 1, 10, 5, 1>(p, plan, x, y); break;
    default: conv2d_forward_walk<Avx2, 1, 10, 7, 1>(p, plan, x, y); break;
  }
}

}  // namespace cnnkit
