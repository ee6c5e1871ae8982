// Direct stride-1 convolution over extended rows (direct_rows_impl.h) with
// AVX2: 8 lanes, a 6-channel x 2-vector tile (12 accumulators, 2 loads, one
// broadcast: 15 of the 16 ymm registers).
// Weight gradient: a 3-channel x 4-tap weight-gradient tile (12 accumulators, 3 dy
// vectors, one input vector: all 16 ymm registers).
#include "cpu/conv/direct_rows_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_rows_avx2) {
  conv2d_forward_direct_rows<Avx2, 6, 2>(p, x, w, bias, y);
}

CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(conv2d_weight_grad_rows_avx2) {
  conv2d_weight_grad_rows<Avx2, 3, 4>(p, chunk, dw, accumulate);
}

}  // namespace cnnkit
