// The worker threads behind parallel_for.
#pragma once
#include <cstdint>

namespace cnnkit {

using ChunkFn = void (*)(void* context, int64_t chunk);

// Calls fn(context, i) once for every i in [0, chunks), spread over the
// calling thread and up to min(threads, chunks) - 1 pool workers, and returns
// when all are done. Each thread first takes, in order, the chunks of its own
// contiguous share (the caller the first), then whatever the others have not
// taken yet. An exception thrown by fn is rethrown here (the first one, after every
// chunk has finished). A call made while the pool is busy with another
// caller's job, or from inside a chunk, runs every chunk on the calling thread.
void run_chunks(int64_t chunks, int64_t threads, ChunkFn fn, void* context);

// Whether the calling thread is executing a chunk (nested regions run
// serially) or is inside a SerialRegion.
bool in_parallel_region();

// While one lives, the regions its thread starts run on that thread alone,
// as nested ones do: for work too small to pay for waking the others.
class SerialRegion {
 public:
  SerialRegion();
  ~SerialRegion();
  SerialRegion(const SerialRegion&) = delete;
  SerialRegion& operator=(const SerialRegion&) = delete;

 private:
  bool was_in_region_;
};

}  // namespace cnnkit
