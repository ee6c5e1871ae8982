#include "cpu/peak/fma_impl.h"
#include "cpu/peak/kernels.h"

namespace cnnkit {

// Baseline x86-64 has no FMA: a multiply and an add per step (SSE, 4 lanes
// when the compiler vectorises nothing here: this is the scalar floor).
float fma_chains_scalar(int64_t iterations) {
  auto fma = [](float a, float b, float c) { return a * b + c; };
  auto sum = [](float v) { return v; };
  return fma_chains(iterations, 1.0f, 0.125f, 0.999999f, 1e-7f, fma, sum);
}

}  // namespace cnnkit
