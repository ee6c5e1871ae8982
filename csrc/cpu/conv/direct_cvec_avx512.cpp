// Direct convolution vectorised over output channels (direct_cvec_impl.h) with
// Avx512: register tiles of 1 or 2 vectors (16, 32 channels) x 12 positions, 3 x 8, or 4 x 6 (at most 24
// accumulators of the 32 zmm registers) or 4 x 7 for rows of 7k positions.
#include "cpu/conv/direct_cvec_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_cvec_avx512) {
  switch (plan.vectors) {
    case 1: conv2d_forward_cvec<Avx512, 1, 12>(p, plan, x, y); break;
    case 2: conv2d_forward_cvec<Avx512, 2, 12>(p, plan, x, y); break;
    case 3: conv2d_forward_cvec<Avx512, 3, 8>(p, plan, x, y); break;
    default:
      // Rows of 7k positions (not 6k) in 7-position tiles, when the kernel is
      // small enough to run without input-channel chunks: 28 accumulators,
      // one of them spilled, beat 5 + 5 + 4 positions on 14-wide rows
      // (8x128x28x28 k256 3x3 s2, A/B: 1.09-1.15; 28-wide rows 1.0; a
      // chunked 7x7 layer lost, 0.95).
      if (p.out_w % 7 == 0 && p.out_w % 6 != 0 && p.kernel_h * p.kernel_w * 64 < kCvecChunkMinFloats) {
        conv2d_forward_cvec<Avx512, 4, 7>(p, plan, x, y);
      } else {
        conv2d_forward_cvec<Avx512, 4, 6>(p, plan, x, y);
      }
      break;
  }
}

}  // namespace cnnkit
