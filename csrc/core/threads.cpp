#include "cnnkit/threads.h"

#include <atomic>
#include <thread>

#include "cnnkit/errors.h"
#ifdef CNNKIT_OPENMP
#include <omp.h>
#endif

namespace cnnkit {
namespace {

int default_threads() {
#ifdef CNNKIT_OPENMP
  return omp_get_max_threads();  // honours OMP_NUM_THREADS
#else
  return 1;
#endif
}

std::atomic<int> g_threads{0};

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    if (n < 1) n = 1;
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  check(n >= 1, ErrorKind::Value, "num_threads must be >= 1, got " + std::to_string(n));
  g_threads.store(n, std::memory_order_relaxed);
}

bool threads_compiled() {
#ifdef CNNKIT_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace cnnkit
