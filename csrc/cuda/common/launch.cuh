// The two kernel shapes every family uses, each with its host emulation (Where::host), so a
// family's .cu file holds only its per-thread work and one line per launcher.
//  - for_each: one independent work item per index, grid-stride loop.
//  - block_reduce: one block per "segment" (a channel, a softmax row): each thread folds a
//    strided share of the segment into an accumulator, the block combines them in a fixed tree
//    (so the result never depends on scheduling), and every thread then finishes its share
//    knowing the total. The host runs the threads' phases one after another, in the same order,
//    so it reproduces the GPU's rounding bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/common/check.h"
#include "cuda/common/hd.h"
#include "cuda/common/where.h"

namespace cnnkit::cuda {

constexpr unsigned kEachBlock = 256;
// A power of two: the tree halves it.
constexpr unsigned kReduceThreads = 256;

template <class Work>
__global__ void for_each_kernel(Work work, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    work(i);
  }
}

template <class Work>
void for_each(const Work& work, int64_t n, const Where& where, const char* op) {
  if (n <= 0) return;
  if (where.host) {
    for (int64_t i = 0; i < n; ++i) work(i);
    return;
  }
  for_each_kernel<<<grid_for(n, kEachBlock), kEachBlock, 0, where.stream>>>(work, n);
  check_launch(op);
}

// Work provides: `Acc` (default-constructible, copyable), `int64_t segments`,
// `Acc partial(int64_t segment, unsigned thread, unsigned threads) const`,
// `static Acc combine(const Acc&, const Acc&)` and
// `void finish(int64_t segment, const Acc& total, unsigned thread, unsigned threads) const`.
template <class Work>
__global__ void block_reduce_kernel(Work work) {
  using Acc = typename Work::Acc;
  // Aligned for the accumulators' doubles (dynamic shared memory promises no more than its type's).
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Acc* tree = reinterpret_cast<Acc*>(shared_bytes);
  const unsigned t = threadIdx.x;
  for (int64_t segment = blockIdx.x; segment < work.segments; segment += gridDim.x) {
    tree[t] = work.partial(segment, t, blockDim.x);
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
      if (t < half) tree[t] = Work::combine(tree[t], tree[t + half]);
      __syncthreads();
    }
    const Acc total = tree[0];
    work.finish(segment, total, t, blockDim.x);
    __syncthreads();  // tree[0] is read by every thread before the next segment overwrites it
  }
}

template <class Work>
void block_reduce(const Work& work, const Where& where, const char* op) {
  using Acc = typename Work::Acc;
  static_assert(alignof(Acc) <= 16, "block_reduce_kernel's shared memory is 16-byte aligned");
  if (work.segments <= 0) return;
  if (where.host) {
    std::vector<Acc> tree(kReduceThreads);
    for (int64_t segment = 0; segment < work.segments; ++segment) {
      for (unsigned t = 0; t < kReduceThreads; ++t) tree[t] = work.partial(segment, t, kReduceThreads);
      for (unsigned half = kReduceThreads / 2; half > 0; half /= 2) {
        for (unsigned t = 0; t < half; ++t) tree[t] = Work::combine(tree[t], tree[t + half]);
      }
      const Acc total = tree[0];
      for (unsigned t = 0; t < kReduceThreads; ++t) work.finish(segment, total, t, kReduceThreads);
    }
    return;
  }
  const unsigned blocks = static_cast<unsigned>(work.segments < 65535 * 8 ? work.segments : 65535 * 8);
  block_reduce_kernel<<<blocks, kReduceThreads, kReduceThreads * sizeof(Acc), where.stream>>>(work);
  check_launch(op);
}

// The plain form of a block_reduce Work: one thread per segment, folding the whole segment
// serially (partial with one thread) and finishing it. Better where segments are many and short
// (softmax over 10 classes); the same Work, so both forms compute the same definition.
template <class Work>
struct SegmentPerThread {
  Work work;
  CNNKIT_HD void operator()(int64_t segment) const { work.finish(segment, work.partial(segment, 0, 1), 0, 1); }
};

template <class Work>
void segment_per_thread(const Work& work, const Where& where, const char* op) {
  for_each(SegmentPerThread<Work>{work}, work.segments, where, op);
}

// A block_reduce Work run either way: one block per segment (long segments) or one thread per
// segment (many short ones).
template <class Work>
void reduce_segments(const Work& work, bool by_block, const Where& where, const char* op) {
  if (by_block) {
    block_reduce(work, where, op);
  } else {
    segment_per_thread(work, where, op);
  }
}

}  // namespace cnnkit::cuda
