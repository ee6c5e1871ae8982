// Depthwise convolution (depthwise_impl.h) with Avx512: register tiles of up to
// 8 output rows (4 when strided) x 2 vectors forward, 9 taps' sums for the weight gradient
// (6 channels x 4 taps with a channel multiplier).
#include "cpu/conv/depthwise_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

// Eight rows per tile at vertical stride 1, four otherwise: MobileNet 3x3,
// 2 threads, A/B against four everywhere: 14x14 1.07-1.12 (three runs),
// 112x112 0.92-1.21 (five runs, no clear change), and 56x56 stride 2
// 0.89 (two runs; the eight rows then span 17 padded rows).
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_depthwise_avx512) {
  if (p.stride_h == 1) {
    conv2d_forward_depthwise<Avx512, 8, 2>(p, x, w, bias, y);
  } else {
    conv2d_forward_depthwise<Avx512, 4, 2>(p, x, w, bias, y);
  }
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_depthwise_avx512) {
  conv2d_backward_depthwise<Avx512, 4, 9, 6, 4>(p, dy, x, w, dx, dw, db);
}

}  // namespace cnnkit
