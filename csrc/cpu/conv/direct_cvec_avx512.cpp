// Direct convolution vectorised over output channels (direct_cvec_impl.h) with
// Avx512: register tiles of 1 or 2 vectors (16, 32 channels) x 12 positions, 3 x 8 or 4 x 6 (at most 24
// accumulators of the 32 zmm registers).
#include "cpu/conv/direct_cvec_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_cvec_avx512) {
  switch (plan.vectors) {
    case 1: conv2d_forward_cvec<Avx512, 1, 12>(p, plan, x, y); break;
    case 2: conv2d_forward_cvec<Avx512, 2, 12>(p, plan, x, y); break;
    case 3: conv2d_forward_cvec<Avx512, 3, 8>(p, plan, x, y); break;
    default: conv2d_forward_cvec<Avx512, 4, 6>(p, plan, x, y); break;
  }
}

}  // namespace cnnkit
