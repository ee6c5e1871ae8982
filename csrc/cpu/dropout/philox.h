// Philox4x32-10: ten rounds of two 32x32->64-bit multiplies and xors with a
// Weyl-sequence key schedule, turning a 128-bit counter into 128 random bits.
// Constants from Salmon et al. (SC 2011). Integer arithmetic only, so every
// ISA's build of it gives the same bits.
#pragma once
#include <cstdint>

namespace cnnkit {
namespace philox {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

struct Block {
  uint32_t v[4];
};

// The four words for counter (block, 0) under `key`.
inline Block generate(uint64_t key, uint64_t block) {
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0,
           c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Block{{c0, c1, c2, c3}};
}

// Unit u takes word u % 4 of block u / 4; its top 24 bits make a float in [0, 1).
inline double uniform(uint32_t word) { return static_cast<double>(word >> 8) * 0x1p-24; }

}  // namespace philox
}  // namespace cnnkit
