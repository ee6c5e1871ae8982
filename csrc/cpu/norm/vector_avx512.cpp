// Batch-norm passes 16 lanes wide with AVX-512; the algorithm is in vector_impl.h.
#include "cpu/simd/avx512.h"

// The same GCC 12 bug as in simd/avx512.h (105593): the widening conversions'
// _mm512_undefined_* placeholders trip -Wuninitialized where they inline.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/norm/vector_impl.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {

const BatchNormRangeKernels batch_norm_range_avx512 = {sums<Avx512>, normalise<Avx512>, input_grad<Avx512>};

}  // namespace cnnkit
