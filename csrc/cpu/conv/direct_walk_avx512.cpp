// Direct convolution walking input rows (direct_walk_impl.h) with AVX-512:
// 1 vector (16 channels) x 2 output rows x up to 12, 10 or 8 positions for
// 3-, 5- or 7-wide kernels (24, 20 or 16 accumulators, the kernel row's
// weights and one broadcast of the 32 zmm), or 2 vectors x 1 row x up to 8
// where a group's channels fill an even number of vectors (odd numbers run
// 1-vector blocks rather than pad one vector in 2: walk_vectors_avx512).
// Two rows rather than one: each accumulator's chain of kernel-width FMAs
// per input row then has another row's chains to overlap with (LeNet c2, one
// thread: 194 -> 180 us per call).
#include "cpu/conv/direct_walk_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx512) {
  if (plan.vectors == 1) {
    switch (p.kernel_w) {
      case 3: conv2d_forward_walk<Avx512, 1, 12, 3, 2>(p, plan, x, y); break;
      case 5: conv2d_forward_walk<Avx512, 1, 10, 5, 2>(p, plan, x, y); break;
      default: conv2d_forward_walk<Avx512, 1, 8, 7, 2>(p, plan, x, y); break;
    }
  } else {
    switch (p.kernel_w) {
      case 3: conv2d_forward_walk<Avx512, 2, 8, 3, 1>(p, plan, x, y); break;
      case 5: conv2d_forward_walk<Avx512, 2, 8, 5, 1>(p, plan, x, y); break;
      default: conv2d_forward_walk<Avx512, 2, 8, 7, 1>(p, plan, x, y); break;
    }
  }
}

}  // namespace cnnkit
