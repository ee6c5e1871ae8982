// Dropout masks from a counter-based generator (Philox4x32-10, Salmon et al.,
// "Parallel random numbers: as easy as 1, 2, 3", SC 2011): the mask of unit i
// depends only on (key, i), so it is the same whatever the thread count, the
// ISA or how the work is split.
#pragma once
#include <cstdint>

namespace cnnkit {

// `units` independent units of `inner` contiguous elements each: elementwise
// dropout has inner = 1, channel dropout (dropout2d) one unit per (n, c) plane.
struct DropoutShape {
  int64_t units = 0;
  int64_t inner = 1;
};

// mask[u] = 1 / (1 - p) (rounded to float32) with probability 1 - p, else 0,
// drawn from uniform(key, u) in [0, 1) with 24 random bits; y = x * mask[u]
// over unit u's elements. 0 < p < 1 (Value error otherwise); y may alias x.
void dropout_forward(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                     uint64_t key);
// The serial loop that defines dropout_forward; kept for tests.
void dropout_forward_reference(const DropoutShape& s, const float* x, float* y, float* mask,
                               double p, uint64_t key);
// Name of the implementation dropout_forward would use now.
const char* dropout_implementation();

}  // namespace cnnkit
