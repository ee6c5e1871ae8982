// The machine's measured float32 peak, for benchmarks' "% of peak".
#pragma once

namespace cnnkit {

// Best GFLOP/s of register-only FMA chains on `threads` threads (widest enabled
// ISA), sampled repeatedly for about `seconds`.
double peak_gflops(int threads, double seconds);

}  // namespace cnnkit
