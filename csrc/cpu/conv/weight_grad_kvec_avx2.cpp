// The output-channel-vector weight gradient (weight_grad_kvec_impl.h) with
// AVX2: up to 2 vectors (16 channels) x 5 taps of one kernel row, or x 3 taps
// of two rows: 10 or 12 accumulators, 2 dy vectors and one broadcast, at most
// 15 of the 16 ymm registers.
#include "cpu/conv/weight_grad_kvec_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(conv2d_weight_grad_kvec_avx2) {
  conv2d_weight_grad_kvec<Avx2, 2, 5>(p, dy, x, dw);
}

}  // namespace cnnkit
