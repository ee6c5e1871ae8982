// The output-channel-vector weight gradient (weight_grad_kvec_impl.h) with
// AVX2: up to 2 vectors (16 channels) x 5 taps, 10 accumulators, 2 dy vectors
// and one broadcast: 13 of the 16 ymm registers.
#include "cpu/conv/weight_grad_kvec_impl.h"
#include "cpu/simd/avx2.h"

namespace cnnkit {

CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(conv2d_weight_grad_kvec_avx2) {
  conv2d_weight_grad_kvec<Avx2, 2, 5>(p, dy, x, dw);
}

}  // namespace cnnkit
