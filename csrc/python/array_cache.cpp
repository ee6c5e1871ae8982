#include "python/array_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>

namespace cnnkit::python {
namespace {

constexpr size_t kPage = 4096;
// Arrays that all started at one offset into a page would alias in the
// store-to-load checks, which compare addresses below 4 KiB (a kernel
// reading one array while writing another, both at the same offset, stalls
// on false dependencies: mnist_cnn's training step ran 8% slower so, every
// kernel alike). Each new block starts at the next of 16 offsets 256 bytes
// apart, as malloc's headers scatter its blocks.
constexpr size_t kOffsetStep = 256, kOffsets = kPage / kOffsetStep;

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, CachedBlock*> free;  // block size -> blocks
  size_t kept = 0;
  size_t limit = 0;
  size_t next_offset = 0;

  Cache() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    limit = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 16 : size_t{1} << 30;
  }
};

Cache& cache() {
  // Never destroyed: arrays may outlive static destruction at interpreter exit.
  static Cache* c = new Cache;
  return *c;
}

void free_block(CachedBlock* block) {
  std::free(block->start);
  delete block;
}

}  // namespace

CachedBlock* acquire_block(size_t bytes) {
  const size_t size = (bytes + kPage - 1) / kPage * kPage;
  Cache& c = cache();
  size_t offset = 0;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free.find(size);
    if (it != c.free.end()) {
      CachedBlock* block = it->second;
      c.free.erase(it);
      c.kept -= size;
      return block;
    }
    offset = c.next_offset++ % kOffsets * kOffsetStep;
  }
  auto block = std::make_unique<CachedBlock>();
  block->start = std::aligned_alloc(64, size + kPage);
  if (block->start == nullptr) throw std::bad_alloc();
  block->data = static_cast<char*>(block->start) + offset;
  block->bytes = size;
  return block.release();
}

void release_block(CachedBlock* block) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.kept + block->bytes <= c.limit) {
      c.free.emplace(block->bytes, block);
      c.kept += block->bytes;
      return;
    }
  }
  free_block(block);
}

size_t clear_array_cache() {
  Cache& c = cache();
  std::multimap<size_t, CachedBlock*> blocks;
  size_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free);
    freed = c.kept;
    c.kept = 0;
  }
  for (auto& b : blocks) free_block(b.second);
  return freed;
}

size_t array_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.kept;
}

}  // namespace cnnkit::python
