// Direct convolution vectorised over output channels (direct_cvec_impl.h) with
// Avx2: register tiles of 1 vector (8 channels) x 12 positions or 2 vectors x 6 positions.
#include "cpu/conv/direct_cvec_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_cvec_avx2) {
  switch (plan.vectors) {
    case 1: conv2d_forward_cvec<Avx2, 1, 12>(p, plan, x, y); break;
    default: conv2d_forward_cvec<Avx2, 2, 6>(p, plan, x, y); break;
  }
}

}  // namespace cnnkit
