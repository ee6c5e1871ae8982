// PReLU rows 8 lanes wide with AVX2; the algorithm is in prelu_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/act/prelu_impl.h"
#include "cpu/act/kernels.h"

namespace cnnkit {

const PreluRowKernels prelu_rows_avx2 = {prelu_row_forward<Avx2>, prelu_row_backward<Avx2>};

}  // namespace cnnkit
