// Activations 8 lanes wide with AVX2 + FMA; the algorithm is in vector_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/act/vector_impl.h"
#include "cpu/act/kernels.h"

namespace cnnkit {

const ActRangeKernels act_vector_avx2 = {forward_range<Avx2>, backward_range<Avx2>,
                                           add_range<Avx2>};

}  // namespace cnnkit
