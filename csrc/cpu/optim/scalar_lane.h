// A one-lane "vector" of a float with the operations update_impl.h uses, so
// the scalar kernels run the very code the AVX2/AVX-512 ones do.
#pragma once
#include <cmath>
#include <cstdint>

namespace cnnkit {
namespace {

struct ScalarLane {
  using F = float;
  using M = bool;
  static constexpr int64_t kWidth = 1;
  static F set1(float v) { return v; }
  static F zero() { return 0.0f; }
  static F load(const float* p) { return *p; }
  static void store(float* p, F v) { *p = v; }
  // Never called with kWidth 1 (there is no partial vector), but update_impl.h names them.
  static F load_partial(const float* p, int64_t) { return *p; }
  static void store_partial(float* p, F v, int64_t) { *p = v; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F sqrt(F a) { return std::sqrt(a); }
  static M lt(F a, F b) { return a < b; }
  static M gt(F a, F b) { return a > b; }
  static M ge(F a, F b) { return a >= b; }
  static F select(M m, F if_true, F if_false) { return m ? if_true : if_false; }
};

}  // namespace
}  // namespace cnnkit
