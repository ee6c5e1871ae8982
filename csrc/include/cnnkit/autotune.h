// Measured algorithm choice: where several implementations can run a call,
// the first call of a shape times them and the winner is remembered, in memory
// and in a cache file shared by every process of this user (as cuDNN's
// benchmark mode does, but kept across runs).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace cnnkit {

// On unless CNNKIT_AUTOTUNE=0 at load time or set_autotune(false); always off
// while deterministic() is on, so that no result depends on a timing.
bool autotune_enabled();
// The setting alone, whatever deterministic() says.
bool autotune_setting();
void set_autotune(bool on);

// The cache file: $CNNKIT_CACHE_DIR, else $XDG_CACHE_HOME/cnnkit, else
// ~/.cache/cnnkit, then autotune.txt; read from the environment at each use.
// Empty when none of them is set.
std::string autotune_cache_file();
// What makes a cache file ours: the library version, its build (the size and
// modification time of the file holding the code), the CPU's model string
// and its widest ISA. A file written under another signature is ignored.
std::string autotune_signature();

// What every key ends with: the ISA cap in force (no wider than the CPU's)
// and the thread count, " isa=avx2 threads=2".
std::string autotune_context();

// The remembered winner for `key` (a description of the call: op, shape,
// direction, ISA cap, threads), "" when none. The file is merged into memory
// the first time a lookup sees its path.
std::string autotune_lookup(const std::string& key);
// Remembers a winner in memory and merges it into the cache file: under a lock
// file, the file is read again, the entry added, and a temporary file renamed
// over it, so two processes never leave a torn or a half-merged file. I/O
// failures only lose the disk copy.
void autotune_store(const std::string& key, const std::string& impl);
// Forgets every winner in memory; with `disk`, removes the cache file too.
void autotune_clear(bool disk);
// The winners known to this process (the cache file merged in), sorted by key.
std::vector<std::pair<std::string, std::string>> autotune_entries();

}  // namespace cnnkit
