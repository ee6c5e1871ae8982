// Prints the widest of cnnkit's x86 ISA levels that the build machine runs (the same test as
// csrc/core/isa.cpp). A sanitizer build reads it: files for a level this machine cannot run are
// never executed by its tests, so instrumenting them only costs build time.
#include <cstdio>

int main() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    std::puts("avx512");
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    std::puts("avx2");
  } else {
    std::puts("scalar");
  }
  return 0;
}
