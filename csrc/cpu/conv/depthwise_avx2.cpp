// Depthwise convolution (depthwise_impl.h) with Avx2: register tiles of up to
// 4 output rows x 2 vectors forward, 9 taps' sums for the weight gradient.
#include "cpu/conv/depthwise_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_depthwise_avx2) {
  conv2d_forward_depthwise<Avx2, 4, 2>(p, x, w, bias, y);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_depthwise_avx2) {
  conv2d_backward_depthwise<Avx2, 4, 9, 3, 3>(p, dy, x, w, dx, dw, db);
}

}  // namespace cnnkit
