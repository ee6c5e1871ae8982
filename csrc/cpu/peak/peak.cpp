// peak_gflops: the float32 FMA throughput of the widest enabled ISA on `threads` threads.
#include "cnnkit/peak.h"

#include <atomic>
#include <chrono>

#include "cnnkit/isa.h"
#include "core/parallel.h"
#include "cpu/peak/kernels.h"

namespace cnnkit {

double peak_gflops(int threads, double seconds) {
  float (*chains)(int64_t) = fma_chains_scalar;
  int lanes = 1;
  int flops_per_lane_step = 2;  // multiply + add, fused or not
#ifdef CNNKIT_X86
  if (isa_enabled(Isa::Avx512)) {
    chains = fma_chains_avx512;
    lanes = 16;
  } else if (isa_enabled(Isa::Avx2)) {
    chains = fma_chains_avx2;
    lanes = 8;
  }
#endif
  const int64_t iterations = 1 << 16;
  const double flops_per_call = 12.0 * lanes * flops_per_lane_step * iterations;
  std::atomic<float> sink{0.0f};
  double best = 0.0;
  const int previous = num_threads();
  set_num_threads(threads);
  const auto stop = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < stop) {
    const auto t0 = std::chrono::steady_clock::now();
    // One call per thread; work_per_item large enough that every thread takes one.
    parallel_for(threads, int64_t{1} << 30, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) sink.store(chains(iterations), std::memory_order_relaxed);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = threads * flops_per_call / dt / 1e9;
    if (rate > best) best = rate;
  }
  set_num_threads(previous);
  return best;
}

}  // namespace cnnkit
