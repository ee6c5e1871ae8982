// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, so element i's random number is a pure function of (key, i). The GPU
// and the host emulator compute the same bits, and no generator state lives on the device.
#pragma once
#include <cstdint>

#include "cuda/common/hd.h"

namespace cnnkit::cuda {

struct Philox4 {
  uint32_t v[4];
};

CNNKIT_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

CNNKIT_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint32_t hi0 = mulhi32(kM0, c.v[0]), lo0 = kM0 * c.v[0];
    const uint32_t hi1 = mulhi32(kM1, c.v[2]), lo1 = kM1 * c.v[2];
    c = Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
  }
  return c;
}

// A uniform float in [0, 1) from the top 24 bits: every value is exact in float32.
CNNKIT_HD float uniform24(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

}  // namespace cnnkit::cuda
