#include "cnnkit/isa.h"

#include <atomic>
#include <cstdlib>

#include "cnnkit/errors.h"

namespace cnnkit {
namespace {

Isa detect() {
#if defined(CNNKIT_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // GCC and Clang check OS support (XGETBV) for the AVX state as part of these.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

Isa initial_cap() {
  const char* env = std::getenv("CNNKIT_MAX_ISA");
  if (env == nullptr || *env == '\0') return Isa::Avx512;
  try {
    return parse_isa(env);
  } catch (const Error&) {
    // A typo in the environment must not make the library unusable; the
    // Python package warns about it on import.
    return Isa::Scalar;
  }
}

std::atomic<int> g_cap{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  fail(ErrorKind::Value, "ISA must be 'scalar', 'avx2' or 'avx512', got '" + name + "'");
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_compiled(Isa isa) {
#if defined(CNNKIT_X86)
  (void)isa;
  return true;
#else
  return isa == Isa::Scalar;
#endif
}

Isa max_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    cap = static_cast<int>(initial_cap());
    g_cap.store(cap, std::memory_order_relaxed);
  }
  return static_cast<Isa>(cap);
}

void set_max_isa(Isa cap) { g_cap.store(static_cast<int>(cap), std::memory_order_relaxed); }

bool isa_enabled(Isa isa) {
  return isa_compiled(isa) && static_cast<int>(isa) <= static_cast<int>(detected_isa()) &&
         static_cast<int>(isa) <= static_cast<int>(max_isa());
}

}  // namespace cnnkit
