#pragma once
#include <cstdint>

namespace cnnkit {

// 12 independent FMA chains of `iterations` steps; the result only defeats dead-code elimination.
float fma_chains_scalar(int64_t iterations);
float fma_chains_avx2(int64_t iterations);
float fma_chains_avx512(int64_t iterations);

}  // namespace cnnkit
