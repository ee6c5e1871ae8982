// Activations 16 lanes wide with AVX-512F; the algorithm is in vector_impl.h.
#include "cpu/simd/avx512.h"
#include "cpu/act/vector_impl.h"
#include "cpu/act/kernels.h"

namespace cnnkit {

const ActRangeKernels act_vector_avx512 = {forward_range<Avx512>, backward_range<Avx512>,
                                           add_range<Avx512>};

}  // namespace cnnkit
