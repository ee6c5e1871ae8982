// Direct convolution walking input rows (direct_walk_impl.h) with AVX-512:
// 1 vector (16 channels) x up to 14 positions or 2 vectors x up to 8 (at most
// 16 accumulators, 2*7 kernel-row weights and one broadcast of the 32 zmm).
#include "cpu/conv/direct_walk_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx512) {
  if (plan.vectors == 1) {
    switch (p.kernel_w) {
      case 3: conv2d_forward_walk<Avx512, 1, 14, 3>(p, plan, x, y); break;
      case 5: conv2d_forward_walk<Avx512, 1, 14, 5>(p, plan, x, y); break;
      default: conv2d_forward_walk<Avx512, 1, 14, 7>(p, plan, x, y); break;
    }
  } else {
    switch (p.kernel_w) {
      case 3: conv2d_forward_walk<Avx512, 2, 8, 3>(p, plan, x, y); break;
      case 5: conv2d_forward_walk<Avx512, 2, 8, 5>(p, plan, x, y); break;
      default: conv2d_forward_walk<Avx512, 2, 8, 7>(p, plan, x, y); break;
    }
  }
}

}  // namespace cnnkit
