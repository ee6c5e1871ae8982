// Sums along rows, one block per row: each thread adds a strided share of the row, then the
// block adds the shares pairwise in a fixed order. No atomics, so every run gives the same bits.
#pragma once

#include <cstdint>

#include "cuda/common/hd.h"

namespace cnnkit::cuda {

constexpr int kReduceThreads = 256;

// Thread tid's share of row `row`: terms tid, tid + threads, ... of F's row.
template <class F>
CNNKIT_HD float partial_row_sum(const F& f, int64_t row, int tid, int threads) {
  float sum = 0.0f;
  for (int64_t i = tid; i < f.length; i += threads) sum += f.term(row, i);
  return sum;
}

// The bias gradient: channel k of an (n, channels, positions) array summed over n and the
// positions (linear's bias is positions == 1).
struct ChannelSum {
  const float* dy = nullptr;
  int64_t channels = 0, positions = 1, length = 0;  // length = n * positions
  CNNKIT_HD float term(int64_t k, int64_t i) const {
    return dy[((i / positions) * channels + k) * positions + i % positions];
  }
};

}  // namespace cnnkit::cuda

namespace cnnkit::cuda {

// p[i] = value: a result that no product writes (a weight gradient over an empty batch).
struct Fill {
  float* p;
  float value;
  CNNKIT_HD void operator()(int64_t i) const { p[i] = value; }
};

}  // namespace cnnkit::cuda
