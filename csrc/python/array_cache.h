// The memory behind cnnkit's large output arrays, kept for reuse after NumPy
// frees them. A training step allocates the same sizes every step; through
// malloc each large array comes back as fresh pages (glibc unmaps big blocks
// and trims the heap's top as they are freed), and the kernel that writes it
// then faults once per page: a few hundred faults a step, a quarter of
// lenet5's step time (benchmarks/results). Here a freed block goes to a free
// list and serves the next array of the same size in whole pages, with its
// pages still mapped.
#pragma once
#include <cstddef>

namespace cnnkit::python {

// Arrays of at least this many bytes come from the cache; smaller ones from
// NumPy (malloc reuses small blocks without faulting).
constexpr size_t kCachedArrayBytes = size_t{128} << 10;

struct CachedBlock {
  void* data;    // 64-byte aligned, at an offset into `start` that varies from block to block
  void* start;   // what was allocated
  size_t bytes;  // the request rounded up to whole pages: blocks serve requests of one such size
};

// A 64-byte aligned block of at least `bytes`, from the cache or new; the
// caller gives it back with release_block (which deletes the CachedBlock).
CachedBlock* acquire_block(size_t bytes);
// Keeps the block for reuse while the cache stays within its limit (1/16 of
// the machine's memory), else frees it.
void release_block(CachedBlock* block);
// Frees every kept block (cnnkit.empty_cache); returns the bytes freed.
size_t clear_array_cache();
// Bytes kept now.
size_t array_cache_bytes();

}  // namespace cnnkit::python
