// Dropout: validation, the split over threads and the ordered list of
// implementations, reference last.
#include <string>

#include "cnnkit/dropout.h"
#include "core/parallel.h"
#include "core/registry.h"
#include "cpu/dropout/kernels.h"

namespace cnnkit {
namespace {

// What the dispatcher needs to know; every kernel accepts every shape.
struct DropoutCall {};

void run_threaded(DropoutRangeFn range, const DropoutShape& s, const float* x, float* y,
                  float* mask, double p, float scale, uint64_t key) {
  // A Philox block (~40 integer ops) per four units, one multiply per element.
  parallel_for(s.units, work_per_item(s.units, {s.inner + 10}), [&](int64_t begin, int64_t end) {
    range(s, x, y, mask, p, scale, key, begin, end);
  });
}

using ThreadedFn = void (*)(const DropoutShape&, const float*, float*, float*, double, float,
                            uint64_t);

void threaded_avx512(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                     float scale, uint64_t key) {
  run_threaded(dropout_range_avx512, s, x, y, mask, p, scale, key);
}
void threaded_avx2(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                   float scale, uint64_t key) {
  run_threaded(dropout_range_avx2, s, x, y, mask, p, scale, key);
}
void threaded_scalar(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                     float scale, uint64_t key) {
  run_threaded(dropout_range_scalar, s, x, y, mask, p, scale, key);
}
void serial(const DropoutShape& s, const float* x, float* y, float* mask, double p, float scale,
            uint64_t key) {
  dropout_range_scalar(s, x, y, mask, p, scale, key, 0, s.units);
}

const KernelImpl<DropoutCall, ThreadedFn> kKernels[] = {
#ifdef CNNKIT_X86
    {"threaded_avx512", Isa::Avx512, nullptr, threaded_avx512},
    {"threaded_avx2", Isa::Avx2, nullptr, threaded_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, threaded_scalar},
    {"reference", Isa::Scalar, nullptr, serial},
};

// 1 / (1 - p) in double, rounded once: what NumPy's float32(1.0 / (1.0 - p)) gives.
float checked_scale(const DropoutShape& s, double p) {
  CNNKIT_CHECK(p > 0.0 && p < 1.0, ErrorKind::Value,
               "dropout: the native kernel takes 0 < p < 1, got " + std::to_string(p));
  CNNKIT_CHECK(s.units >= 0 && s.inner >= 0, ErrorKind::Value, "dropout: invalid shape");
  return static_cast<float>(1.0 / (1.0 - p));
}

}  // namespace

void dropout_forward(const DropoutShape& s, const float* x, float* y, float* mask, double p,
                     uint64_t key) {
  const float scale = checked_scale(s, p);
  select_kernel(kKernels, DropoutCall{}).run(s, x, y, mask, p, scale, key);
}

void dropout_forward_reference(const DropoutShape& s, const float* x, float* y, float* mask,
                               double p, uint64_t key) {
  serial(s, x, y, mask, p, checked_scale(s, p), key);
}

const char* dropout_implementation() { return select_kernel(kKernels, DropoutCall{}).name; }

}  // namespace cnnkit
