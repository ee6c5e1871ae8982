#include "cnnkit/threads.h"

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

#include "cnnkit/errors.h"

namespace cnnkit {
namespace {

// OMP_NUM_THREADS when it is a positive number (the usual knob, honoured for
// users who set it for NumPy and PyTorch too), else the cores this process may run on.
int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && n >= 1 && n <= 4096) return static_cast<int>(n);
  }
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n >= 1 ? static_cast<int>(n) : 1;
}

std::atomic<int> g_threads{0};
std::atomic<bool> g_deterministic{false};

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  CNNKIT_CHECK(n >= 1, ErrorKind::Value, "num_threads must be >= 1, got " + std::to_string(n));
  g_threads.store(n, std::memory_order_relaxed);
}

bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }

void set_deterministic(bool on) { g_deterministic.store(on, std::memory_order_relaxed); }

}  // namespace cnnkit
