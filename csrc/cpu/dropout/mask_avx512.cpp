// Dropout's mask and scaling built with AVX-512; the loops are in mask_impl.h.
#include "cpu/dropout/mask_impl.h"

namespace cnnkit {

void dropout_range_avx512(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                          float scale, uint64_t key, int64_t begin, int64_t end) {
  dropout_range(s, x, y, mask, p, scale, key, begin, end);
}

}  // namespace cnnkit
