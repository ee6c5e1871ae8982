// PReLU rows 16 lanes wide with AVX-512; the algorithm is in prelu_impl.h.
#include "cpu/simd/avx512.h"

// The same GCC 12 bug as in simd/avx512.h (105593): the widening conversions'
// _mm512_undefined_* placeholders trip -Wuninitialized where they inline.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/act/prelu_impl.h"
#include "cpu/act/kernels.h"

namespace cnnkit {

const PreluRowKernels prelu_rows_avx512 = {prelu_row_forward<Avx512>, prelu_row_backward<Avx512>};

}  // namespace cnnkit
