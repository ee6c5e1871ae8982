#include <immintrin.h>

#include "cpu/peak/fma_impl.h"
#include "cpu/peak/kernels.h"

namespace cnnkit {

float fma_chains_avx512(int64_t iterations) {
  auto fma = [](__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); };
  auto sum = [](__m512 v) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    return lanes[0] + lanes[15];
  };
  return fma_chains(iterations, _mm512_set1_ps(1.0f), _mm512_set1_ps(0.125f), _mm512_set1_ps(0.999999f),
                    _mm512_set1_ps(1e-7f), fma, sum);
}

}  // namespace cnnkit
