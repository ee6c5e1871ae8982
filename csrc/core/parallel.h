// parallel_for: the one way kernels use threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "cnnkit/threads.h"
#include "core/thread_pool.h"

namespace cnnkit {

// Cost per item for parallel_for(n, ...): the product of `factors`, saturated
// so that n times it cannot overflow (absurd but valid shapes reach here: a
// pooling kernel of 2^31 x 2^31).
inline int64_t work_per_item(int64_t n, std::initializer_list<int64_t> factors) {
  const int64_t cap = std::numeric_limits<int64_t>::max() / std::max<int64_t>(n, 1);
  int64_t work = 1;
  for (int64_t f : factors) {
    if (f <= 0) return 1;
    work = work > cap / f ? cap : work * f;
  }
  return work;
}

// Runs fn(begin, end) over [0, n) split into contiguous chunks, about
// chunks_per_thread per thread. Thread t works through the t-th share of the
// chunks in order (the same items on every call, so its data is still in its
// cache), then takes what is left of the others' shares: a thread slowed by
// something else on its core (another process, a library's spinning threads,
// a hypervisor) does fewer chunks instead of making the others wait at the
// end. `work_per_item` is a rough cost (e.g. flops) of one item: regions
// whose total work is below ~64k units run on the calling thread, because
// waking threads costs more than they save. Nested calls run serially. fn
// must not assume anything about which thread runs a chunk.
template <class Fn>
void parallel_for_chunks(int64_t n, int64_t work_per_item, int64_t chunks_per_thread, Fn&& fn) {
  if (n <= 0) return;
  constexpr int64_t kMinWorkPerThread = 1 << 16;
  int64_t threads = in_parallel_region() ? 1 : num_threads();
  const int64_t work = std::max<int64_t>(work_per_item, 1);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t total = work > kMax / n ? kMax : n * work;
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, total / kMinWorkPerThread));
  threads = std::min<int64_t>(threads, n);
  if (threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  struct Context {
    std::remove_reference_t<Fn>* fn;
    int64_t n, chunks;
  } context{&fn, n, std::min<int64_t>(n, threads * chunks_per_thread)};
  run_chunks(
      context.chunks, threads,
      [](void* p, int64_t t) {
        const auto& c = *static_cast<const Context*>(p);
        const int64_t begin = c.n * t / c.chunks;
        const int64_t end = c.n * (t + 1) / c.chunks;
        if (begin < end) (*c.fn)(begin, end);
      },
      &context);
}

// Four chunks per thread: enough for the others to take over a slowed
// thread's last ones, few enough that each chunk's items stay together.
template <class Fn>
void parallel_for(int64_t n, int64_t work_per_item, Fn&& fn) {
  parallel_for_chunks(n, work_per_item, 4, static_cast<Fn&&>(fn));
}

// Each item a chunk of its own, for items that take long each (an image
// through a plan's whole trunk): with four chunks per thread a chunk is
// several such items, and the threads that finish first wait for the last
// one's. Always on every thread (the items are known to be worth it).
template <class Fn>
void parallel_for_each_item(int64_t n, Fn&& fn) {
  parallel_for_chunks(n, int64_t{1} << 30, n, static_cast<Fn&&>(fn));
}

}  // namespace cnnkit
