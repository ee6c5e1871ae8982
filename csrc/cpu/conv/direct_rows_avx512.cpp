// Direct stride-1 convolution over extended rows (direct_rows_impl.h) with
// AVX-512: 16 lanes, a 6-channel x 4-vector tile (24 accumulators, 4 loads,
// one broadcast: 29 of the 32 zmm registers).
// Weight gradient: a 4-channel x 6-tap weight-gradient tile (24 accumulators, 4 dy
// vectors, one input vector: 29 of the 32 zmm registers).
#include "cpu/conv/direct_rows_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_rows_avx512) {
  conv2d_forward_direct_rows<Avx512, 6, 4>(p, x, w, bias, y);
}

CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(conv2d_weight_grad_rows_avx512) {
  conv2d_weight_grad_rows<Avx512, 4, 6>(p, chunk, dw, accumulate);
}

}  // namespace cnnkit
