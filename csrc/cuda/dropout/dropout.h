// Dropout on the GPU with a counter-based generator (philox.h): the keep decision of unit u (an
// element, or a channel for dropout2d) is uniform(key, u) >= p, its mask value 1/(1-p) or 0. The
// key is drawn by the Python layer from cnnkit's seeded generator, so cnnkit.manual_seed makes
// GPU dropout repeat, and the host emulator reproduces every mask bit for bit.
#pragma once
#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda {

// Unit u's uniform number: word u % 4 of Philox at counter (u / 4 as 64 bits, 0, 0) and this key.
struct DropoutKey {
  uint32_t k0 = 0, k1 = 0;
};

// out = x * mask over `units` groups of `spatial` elements each (spatial = 1: element dropout);
// mask (one value per unit) may be null. scale = float32(1 / (1 - p)).
void dropout_forward(const float* x, float* out, float* mask, int64_t units, int64_t spatial, float p, float scale,
                     const DropoutKey& key, const Where& where);

// out = dy * mask[e / spatial]: both backward passes.
void dropout_backward(const float* dy, const float* mask, float* out, int64_t units, int64_t spatial,
                      const Where& where);

}  // namespace cnnkit::cuda
