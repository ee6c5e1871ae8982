// Depthwise convolution (depthwise_impl.h) with Avx512: register tiles of up to
// 4 output rows x 2 vectors forward, 9 taps' sums for the weight gradient.
#include "cpu/conv/depthwise_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_depthwise_avx512) {
  conv2d_forward_depthwise<Avx512, 4, 2>(p, x, w, bias, y);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_depthwise_avx512) {
  conv2d_backward_depthwise<Avx512, 4, 9>(p, dy, x, w, dx, dw, db);
}

}  // namespace cnnkit
