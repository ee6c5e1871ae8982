// Optimizer updates 8 lanes wide with AVX2; the formulas are in update_impl.h.
#include "cpu/simd/avx2.h"
#include "cpu/optim/update_impl.h"

namespace cnnkit {

void optimizer_range_avx2(const OptimizerOptions& o, const OptimizerCoefficients& c,
                          const OptimizerTensor& t, int64_t begin, int64_t end) {
  optimizer_range<Avx2>(o, c, t, begin, end);
}

}  // namespace cnnkit
