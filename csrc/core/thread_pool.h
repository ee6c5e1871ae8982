// The worker threads behind parallel_for.
#pragma once
#include <cstdint>

namespace cnnkit {

using ChunkFn = void (*)(void* context, int64_t chunk);

// Calls fn(context, i) once for every i in [0, chunks), spread over the
// calling thread and up to min(threads, chunks) - 1 pool workers that take
// chunks in order as they become free, and returns when all are done. An exception thrown by fn is rethrown here (the first one, after every
// chunk has finished). A call made while the pool is busy with another
// caller's job, or from inside a chunk, runs every chunk on the calling thread.
void run_chunks(int64_t chunks, int64_t threads, ChunkFn fn, void* context);

// Whether the calling thread is executing a chunk (nested regions run serially).
bool in_parallel_region();

}  // namespace cnnkit
