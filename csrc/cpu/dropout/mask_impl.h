// Dropout on a range of units: Philox blocks of four units into the mask, then
// each unit's elements scaled by its mask value. Plain loops over arrays, so
// the *_avx2.cpp / *_avx512.cpp builds vectorise them; integer arithmetic and
// one float32 multiply per element give the same bits on every ISA.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/dropout/kernels.h"
#include "cpu/dropout/philox.h"

namespace cnnkit {
namespace {

inline void dropout_range(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                          float scale, uint64_t key, int64_t begin, int64_t end) {
  // Mask words a block at a time; the blocks at either end may hold units
  // outside [begin, end), which are computed but not written.
  constexpr int64_t kBlocks = 64;
  uint32_t words[4 * kBlocks];
  for (int64_t first = begin / 4; first * 4 < end; first += kBlocks) {
    const int64_t blocks = std::min<int64_t>(kBlocks, (end + 3) / 4 - first);
    for (int64_t b = 0; b < blocks; ++b) {
      const philox::Block r = philox::generate(key, static_cast<uint64_t>(first + b));
      for (int j = 0; j < 4; ++j) words[4 * b + j] = r.v[j];
    }
    const int64_t lo = std::max(begin, first * 4), hi = std::min(end, (first + blocks) * 4);
    for (int64_t u = lo; u < hi; ++u) {
      mask[u] = philox::uniform(words[u - first * 4]) >= p ? scale : 0.0f;
    }
  }
  if (s.inner == 1) {
    for (int64_t u = begin; u < end; ++u) y[u] = x[u] * mask[u];
    return;
  }
  for (int64_t u = begin; u < end; ++u) {
    const float m = mask[u];
    const float* xu = x + u * s.inner;
    float* yu = y + u * s.inner;
    for (int64_t i = 0; i < s.inner; ++i) yu[i] = xu[i] * m;
  }
}

}  // namespace
}  // namespace cnnkit
