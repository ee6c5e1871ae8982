// Softmax and cross-entropy rows 8 lanes wide with AVX2 + FMA; the
// algorithm is in vector_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/loss/vector_impl.h"
#include "cpu/loss/kernels.h"

namespace cnnkit {

const LossRowKernels loss_vector_avx2 = {
    softmax_rows<Avx2>, softmax_backward_rows<Avx2>, cross_entropy_rows<Avx2>,
    cross_entropy_backward_rows<Avx2>};

}  // namespace cnnkit
