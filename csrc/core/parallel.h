// parallel_for: the one way kernels use threads.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cnnkit/threads.h"
#ifdef CNNKIT_OPENMP
#include <omp.h>
#endif

namespace cnnkit {

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread.
// `work_per_item` is a rough cost (e.g. flops) of one item: regions whose total
// work is below ~64k units run on the calling thread, because waking threads
// costs more than they save. Nested calls run serially (OpenMP's default).
template <class Fn>
void parallel_for(int64_t n, int64_t work_per_item, Fn&& fn) {
  if (n <= 0) return;
  constexpr int64_t kMinWorkPerThread = 1 << 16;
  int64_t threads = num_threads();
  const int64_t total = n * std::max<int64_t>(work_per_item, 1);
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, total / kMinWorkPerThread));
  threads = std::min<int64_t>(threads, n);
#ifdef CNNKIT_OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(static_cast<int>(threads))
    {
      const int64_t t = omp_get_thread_num();
      const int64_t team = omp_get_num_threads();
      const int64_t begin = n * t / team;
      const int64_t end = n * (t + 1) / team;
      if (begin < end) fn(begin, end);
    }
    return;
  }
#endif
  fn(int64_t{0}, n);
}

}  // namespace cnnkit
