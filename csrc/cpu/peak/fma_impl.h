// The machine's float32 compute peak, measured: independent chains of FMAs
// (enough to cover latency x the number of FMA pipes) in registers, no memory
// traffic. Included by one file per ISA; internal linkage keeps the ISAs apart.
#pragma once
#include <cstdint>

namespace cnnkit {
namespace {

// 12 chains: more than the 4-cycle latency x 2 pipes of current x86 cores.
// Each chain starts from its own value (seed + i * step): chains that start
// equal compute equal values, and the compiler merges them into one, which
// made an earlier version report 12 times the latency-bound rate of a single
// chain (370 GFLOP/s per core on a 3.8 GHz Zen 5 whose two 512-bit FMA pipes
// give 245).
template <class Vec, class Fma, class Sum>
float fma_chains(int64_t iterations, Vec seed, Vec step, Vec mul, Vec add, Fma fma, Sum sum) {
  Vec a0 = seed, a1 = a0 + step, a2 = a1 + step, a3 = a2 + step, a4 = a3 + step, a5 = a4 + step;
  Vec a6 = a5 + step, a7 = a6 + step, a8 = a7 + step, a9 = a8 + step, a10 = a9 + step, a11 = a10 + step;
  for (int64_t i = 0; i < iterations; ++i) {
    a0 = fma(a0, mul, add);
    a1 = fma(a1, mul, add);
    a2 = fma(a2, mul, add);
    a3 = fma(a3, mul, add);
    a4 = fma(a4, mul, add);
    a5 = fma(a5, mul, add);
    a6 = fma(a6, mul, add);
    a7 = fma(a7, mul, add);
    a8 = fma(a8, mul, add);
    a9 = fma(a9, mul, add);
    a10 = fma(a10, mul, add);
    a11 = fma(a11, mul, add);
  }
  return sum(a0) + sum(a1) + sum(a2) + sum(a3) + sum(a4) + sum(a5) + sum(a6) + sum(a7) + sum(a8) +
         sum(a9) + sum(a10) + sum(a11);
}

}  // namespace
}  // namespace cnnkit
