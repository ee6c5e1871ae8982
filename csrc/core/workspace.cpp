#include "core/workspace.h"

#include <cstdlib>
#include <limits>
#include <new>

namespace cnnkit {
namespace {

struct Buffer {
  float* data = nullptr;
  std::size_t capacity = 0;
  ~Buffer() { std::free(data); }
};

}  // namespace

float* thread_workspace(WorkspaceSlot slot, std::size_t floats) {
  thread_local Buffer buffers[static_cast<int>(WorkspaceSlot::Count)];
  Buffer& b = buffers[static_cast<int>(slot)];
  if (floats > b.capacity) {
    std::free(b.data);
    b.data = nullptr;
    b.capacity = 0;
    // Round up to a whole cache line; aligned_alloc needs a multiple of the alignment.
    // A request whose byte count cannot be formed is one no allocator could meet.
    if (floats > std::numeric_limits<std::size_t>::max() / sizeof(float) - 16) throw std::bad_alloc();
    const std::size_t rounded = (floats + 15) / 16 * 16;
    void* p = std::aligned_alloc(64, rounded * sizeof(float));
    if (p == nullptr) throw std::bad_alloc();
    b.data = static_cast<float*>(p);
    b.capacity = rounded;
  }
  return b.data;
}

}  // namespace cnnkit
