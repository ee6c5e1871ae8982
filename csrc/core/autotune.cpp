#include "cnnkit/autotune.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "cnnkit/isa.h"
#include "cnnkit/threads.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#define CNNKIT_HAVE_FLOCK 1
#define CNNKIT_HAVE_DLADDR 1
#endif
#if defined(CNNKIT_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#ifndef CNNKIT_VERSION_STRING
#define CNNKIT_VERSION_STRING "unknown"
#endif

namespace cnnkit {
namespace {

constexpr const char* kMagic = "cnnkit-autotune 1";
// A cache file is a few hundred short lines; anything much bigger is not ours.
constexpr std::uintmax_t kMaxFileBytes = std::uintmax_t{4} << 20;
constexpr size_t kMaxKeyBytes = 256;

std::atomic<int> g_setting{-1};

bool initial_setting() {
  const char* env = std::getenv("CNNKIT_AUTOTUNE");
  if (env == nullptr) return true;
  std::string v(env);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  return !(v == "0" || v == "false" || v == "off" || v == "no");
}

std::string cpu_model() {
#if defined(CNNKIT_X86) && (defined(__GNUC__) || defined(__clang__))
  unsigned regs[12] = {};
  if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    }
    char brand[49] = {};
    std::memcpy(brand, regs, 48);
    std::string s(brand);
    const size_t first = s.find_first_not_of(' ');
    return first == std::string::npos ? "unknown" : s.substr(first, s.find_last_not_of(' ') - first + 1);
  }
#endif
  return "unknown";
}

// The build of the library holding this code: the size and modification time
// of its file (the Python module or a shared cnnkit). A rebuild with new or
// changed kernels keeps the version string, and its winners must be measured
// anew, not read from what the previous build measured. "static" where no
// file can be found (a static library linked into an executable).
std::string build_identity() {
#ifdef CNNKIT_HAVE_DLADDR
  Dl_info info;
  struct stat st;
  if (dladdr(reinterpret_cast<void*>(&build_identity), &info) != 0 && info.dli_fname != nullptr &&
      stat(info.dli_fname, &st) == 0) {
    return "build " + std::to_string(static_cast<long long>(st.st_size)) + "@" +
           std::to_string(static_cast<long long>(st.st_mtime));
  }
#endif
  return "build static";
}

// A line of the file is "key<TAB>implementation"; names are ours, so anything
// else (control characters, overlong keys, odd implementation names) marks a
// line that was not written by this library and is skipped.
bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  return std::all_of(key.begin(), key.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
}
bool valid_impl(const std::string& impl) {
  if (impl.empty() || impl.size() > 64) return false;
  return std::all_of(impl.begin(), impl.end(),
                     [](unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

using Table = std::map<std::string, std::string>;

// The entries of the file at `path`, empty when it is missing, too big,
// unreadable or written under another signature.
Table read_file(const std::string& path) {
  Table table;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxFileBytes) return table;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line) || line != kMagic) return table;
  if (!std::getline(in, line) || line != "signature " + autotune_signature()) return table;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    std::string key = line.substr(0, tab), impl = line.substr(tab + 1);
    if (valid_key(key) && valid_impl(impl)) table[std::move(key)] = std::move(impl);
  }
  return table;
}

// Holds an exclusive lock on `path`.lock while alive (where the OS has flock),
// so that the read-merge-rename of two processes happen one after the other.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
#ifdef CNNKIT_HAVE_FLOCK
    fd_ = ::open((path + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
#else
    (void)path;
#endif
  }
  ~FileLock() {
#ifdef CNNKIT_HAVE_FLOCK
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
#endif
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

void merge_into_file(const std::string& path, const std::string& key, const std::string& impl) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return;
  FileLock lock(path);
  Table table = read_file(path);
  table[key] = impl;
  static std::atomic<unsigned> counter{0};
  std::ostringstream tmp_name;
#ifdef CNNKIT_HAVE_FLOCK
  tmp_name << path << ".tmp." << ::getpid() << '.' << counter++;
#else
  tmp_name << path << ".tmp." << counter++;
#endif
  const std::string tmp = tmp_name.str();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kMagic << "\nsignature " << autotune_signature() << '\n';
    for (const auto& [k, v] : table) out << k << '\t' << v << '\n';
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::remove(tmp.c_str());
}

struct Memory {
  std::mutex mutex;
  Table table;
  std::string merged_path;  // the cache file last merged into `table`
};

Memory& memory() {
  static Memory m;
  return m;
}

// Merges the cache file into memory unless this path was merged already (the
// environment may have pointed elsewhere since); this process's own winners
// stay. Called with m.mutex held; false when nothing new was read.
bool merge_file(Memory& m) {
  const std::string path = autotune_cache_file();
  if (path == m.merged_path) return false;
  m.merged_path = path;
  if (path.empty()) return false;
  for (auto& [k, v] : read_file(path)) m.table.emplace(k, v);
  return true;
}

}  // namespace

bool autotune_setting() {
  int s = g_setting.load(std::memory_order_relaxed);
  if (s < 0) {
    s = initial_setting() ? 1 : 0;
    g_setting.store(s, std::memory_order_relaxed);
  }
  return s == 1;
}

bool autotune_enabled() { return autotune_setting() && !deterministic(); }

void set_autotune(bool on) { g_setting.store(on ? 1 : 0, std::memory_order_relaxed); }

std::string autotune_cache_file() {
  auto set = [](const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : std::string();
  };
  std::filesystem::path dir;
  if (std::string d = set("CNNKIT_CACHE_DIR"); !d.empty()) {
    dir = d;
  } else if (std::string x = set("XDG_CACHE_HOME"); !x.empty()) {
    dir = std::filesystem::path(x) / "cnnkit";
  } else if (std::string h = set("HOME"); !h.empty()) {
    dir = std::filesystem::path(h) / ".cache" / "cnnkit";
  } else {
    return "";
  }
  return (dir / "autotune.txt").string();
}

std::string autotune_signature() {
  static const std::string sig = std::string(CNNKIT_VERSION_STRING) + " | " + build_identity() + " | " +
                                 cpu_model() + " | " + isa_name(detected_isa());
  return sig;
}

std::string autotune_context() {
  const Isa isa = static_cast<Isa>(std::min(static_cast<int>(max_isa()), static_cast<int>(detected_isa())));
  return std::string(" isa=") + isa_name(isa) + " threads=" + std::to_string(num_threads());
}

std::string autotune_lookup(const std::string& key) {
  Memory& m = memory();
  std::lock_guard<std::mutex> guard(m.mutex);
  auto it = m.table.find(key);
  if (it != m.table.end()) return it->second;
  if (!merge_file(m)) return "";
  it = m.table.find(key);
  return it == m.table.end() ? std::string() : it->second;
}

void autotune_store(const std::string& key, const std::string& impl) {
  if (!valid_key(key) || !valid_impl(impl)) return;
  {
    Memory& m = memory();
    std::lock_guard<std::mutex> guard(m.mutex);
    m.table[key] = impl;
  }
  const std::string path = autotune_cache_file();
  if (!path.empty()) merge_into_file(path, key, impl);
}

void autotune_clear(bool disk) {
  Memory& m = memory();
  std::lock_guard<std::mutex> guard(m.mutex);
  m.table.clear();
  // Without `disk` the file is not merged again, so every shape is measured
  // anew; with it, whatever file appears there next is read.
  m.merged_path = disk ? std::string() : autotune_cache_file();
  if (disk) {
    const std::string path = autotune_cache_file();
    if (!path.empty()) {
      FileLock lock(path);
      std::remove(path.c_str());
    }
  }
}

std::vector<std::pair<std::string, std::string>> autotune_entries() {
  Memory& m = memory();
  std::lock_guard<std::mutex> guard(m.mutex);
  merge_file(m);
  return {m.table.begin(), m.table.end()};
}

}  // namespace cnnkit
