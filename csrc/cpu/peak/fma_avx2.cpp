#include <immintrin.h>

#include "cpu/peak/fma_impl.h"
#include "cpu/peak/kernels.h"

namespace cnnkit {

float fma_chains_avx2(int64_t iterations) {
  auto fma = [](__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); };
  auto sum = [](__m256 v) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    return lanes[0] + lanes[7];
  };
  return fma_chains(iterations, _mm256_set1_ps(1.0f), _mm256_set1_ps(0.125f), _mm256_set1_ps(0.999999f),
                    _mm256_set1_ps(1e-7f), fma, sum);
}

}  // namespace cnnkit
