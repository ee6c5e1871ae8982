// Softmax and cross-entropy rows 16 lanes wide with AVX-512F; the
// algorithm is in vector_impl.h.
#include "cpu/simd/avx512.h"
#include "cpu/loss/vector_impl.h"
#include "cpu/loss/kernels.h"

namespace cnnkit {

const LossRowKernels loss_vector_avx512 = {
    softmax_rows<Avx512>, softmax_backward_rows<Avx512>, cross_entropy_rows<Avx512>,
    cross_entropy_backward_rows<Avx512>};

}  // namespace cnnkit
