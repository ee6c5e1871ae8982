// The output-channel-vector weight gradient (weight_grad_kvec_impl.h) with
// AVX-512: up to 4 vectors (64 channels) x 5 taps of one kernel row, or x 3
// taps of two rows: 20 or 24 accumulators, 4 dy vectors and one broadcast,
// at most 29 of the 32 zmm registers.
#include "cpu/conv/weight_grad_kvec_impl.h"
#include "cpu/simd/avx512.h"

namespace cnnkit {

CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(conv2d_weight_grad_kvec_avx512) {
  conv2d_weight_grad_kvec<Avx512, 4, 5>(p, dy, x, dw);
}

}  // namespace cnnkit
