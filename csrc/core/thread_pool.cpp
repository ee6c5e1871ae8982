// A small thread pool instead of OpenMP. OpenMP runtimes keep idle threads
// spinning for milliseconds after each region (libgomp's default); next to
// another OpenMP runtime in the same process (PyTorch bundles its own) or next
// to NumPy's BLAS threads, the spinners steal the cores the other library
// needs. Here idle workers spin for at most kSpin, then sleep on a condition
// variable, and only the workers a job needs are woken.
#include "core/thread_pool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CNNKIT_CPU_RELAX() _mm_pause()
#else
#define CNNKIT_CPU_RELAX() std::this_thread::yield()
#endif

namespace cnnkit {
namespace {

// Long enough to bridge the Python overhead between two consecutive ops of a
// training step, short enough not to matter to anyone else.
constexpr auto kSpin = std::chrono::microseconds(100);

thread_local bool t_in_region = false;

// Spins (with pause) until pred() holds or kSpin passes; returns pred().
template <class Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    CNNKIT_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

// Each thread owns a contiguous run of chunks and takes its own first, in
// order; a thread that runs out takes the chunks still left in the others'
// runs. The owned runs give every call the same thread-to-data mapping, so a
// thread finds the images it worked on last call (or that the previous layer
// wrote) still in its own core's cache (LeNet c2, 2 threads: 91 -> 81 us per
// call against chunks handed out in one shared order); taking the leftovers
// keeps a thread slowed by something else on its core from making the others
// wait at the end.
struct alignas(64) ChunkRun {
  std::atomic<int64_t> next{0};
  int64_t end = 0;
};

struct Job {
  ChunkFn fn = nullptr;
  void* context = nullptr;
  ChunkRun* runs = nullptr;
  int64_t threads = 0;
  std::atomic<int64_t> pending_workers{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  // Thread `self` (0 is the caller) takes chunks until none are left.
  void work(int64_t self) {
    for (int64_t k = 0; k < threads; ++k) {
      ChunkRun& run = runs[(self + k) % threads];
      for (int64_t i = run.next.fetch_add(1); i < run.end; i = run.next.fetch_add(1)) {
        try {
          fn(context, i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
      }
    }
  }
};

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      stopping_ = true;
    }
    sleep_cv_.notify_all();
    for (auto& w : workers_) w->thread.join();
  }

  // Returns false (and does nothing) when another caller holds the pool.
  bool try_run(int64_t chunks, int64_t helpers, ChunkFn fn, void* context) {
    std::unique_lock<std::mutex> busy(busy_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(helpers);
    const int64_t threads = helpers + 1;
    for (int64_t t = 0; t < threads; ++t) {
      runs_[t].next.store(chunks * t / threads, std::memory_order_relaxed);
      runs_[t].end = chunks * (t + 1) / threads;
    }
    Job job;
    job.fn = fn;
    job.context = context;
    job.runs = runs_.get();
    job.threads = threads;
    job.pending_workers.store(helpers);
    for (int64_t w = 0; w < helpers; ++w) workers_[w]->job.store(&job, std::memory_order_release);
    {
      // Taking the lock orders the stores above before any sleeper re-checks.
      std::lock_guard<std::mutex> lock(sleep_mutex_);
    }
    sleep_cv_.notify_all();
    t_in_region = true;
    job.work(0);
    t_in_region = false;
    // Every chunk is taken. Workers that have not picked the job up yet (not
    // scheduled: another process may hold their core) are not waited for: take
    // the job back from them. Exactly one side's exchange sees the pointer.
    for (int64_t w = 0; w < helpers; ++w) {
      if (workers_[w]->job.exchange(nullptr, std::memory_order_acq_rel) == &job) {
        job.pending_workers.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    // The job lives on this stack: wait until every worker that took it has let go.
    if (!spin_until([&] { return job.pending_workers.load(std::memory_order_acquire) == 0; })) {
      while (job.pending_workers.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    }
    if (job.error) std::rethrow_exception(job.error);
    return true;
  }

 private:
  struct Worker {
    std::atomic<Job*> job{nullptr};
    int64_t index = 0;  // its thread number in a job: 1 + its place in workers_
    std::thread thread;
  };

  void grow(int64_t count) {
    if (static_cast<int64_t>(workers_.size()) < count) {
      runs_ = std::make_unique<ChunkRun[]>(static_cast<size_t>(count + 1));
    }
    while (static_cast<int64_t>(workers_.size()) < count) {
      auto worker = std::make_unique<Worker>();
      Worker* self = worker.get();
      self->index = static_cast<int64_t>(workers_.size()) + 1;
      worker->thread = std::thread([this, self] { loop(self); });
      workers_.push_back(std::move(worker));
    }
  }

  void loop(Worker* self) {
    for (;;) {
      auto has_job = [&] { return self->job.load(std::memory_order_acquire) != nullptr; };
      if (!spin_until(has_job)) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleep_cv_.wait(lock, [&] { return stopping_ || has_job(); });
        if (stopping_ && !has_job()) return;
      }
      Job* job = self->job.exchange(nullptr, std::memory_order_acq_rel);
      if (job == nullptr) continue;  // the caller finished every chunk and took it back
      t_in_region = true;
      job->work(self->index);
      t_in_region = false;
      job->pending_workers.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex busy_mutex_;  // one job at a time
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<ChunkRun[]> runs_;  // one per thread of the current job
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
  bool stopping_ = false;
};

std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_atfork_once;

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  std::call_once(g_atfork_once, [] {
    // A forked child has none of the parent's threads: it starts a new pool
    // and abandons the old one (its mutexes may be held by threads that are gone).
    pthread_atfork(nullptr, nullptr, [] { g_pool.store(nullptr, std::memory_order_release); });
  });
  auto* fresh = new Pool();
  Pool* expected = nullptr;
  if (!g_pool.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    delete fresh;
    return *expected;
  }
  // Deliberately never destroyed: joining workers during static destruction
  // at interpreter exit can deadlock, and the OS reclaims the threads anyway.
  return *fresh;
}

}  // namespace

bool in_parallel_region() { return t_in_region; }

SerialRegion::SerialRegion() : was_in_region_(t_in_region) { t_in_region = true; }

SerialRegion::~SerialRegion() { t_in_region = was_in_region_; }

void run_chunks(int64_t chunks, int64_t threads, ChunkFn fn, void* context) {
  if (chunks <= 0) return;
  const int64_t helpers = (threads < chunks ? threads : chunks) - 1;
  if (helpers > 0 && !t_in_region && pool().try_run(chunks, helpers, fn, context)) return;
  for (int64_t i = 0; i < chunks; ++i) fn(context, i);
}

}  // namespace cnnkit
