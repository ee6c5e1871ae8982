// Optimizer updates 16 lanes wide with AVX-512F; the formulas are in update_impl.h.
#include "cpu/simd/avx512.h"
#include "cpu/optim/update_impl.h"

namespace cnnkit {

void optimizer_range_avx512(const OptimizerOptions& o, const OptimizerCoefficients& c,
                            const OptimizerTensor& t, int64_t begin, int64_t end) {
  optimizer_range<Avx512>(o, c, t, begin, end);
}

}  // namespace cnnkit
