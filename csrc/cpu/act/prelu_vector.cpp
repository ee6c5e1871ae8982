// The vector PReLU rows threaded over (outer, channel) rows, as in threaded.cpp:
// each row's share of d(weight) is summed in double, then the rows of one weight
// entry are added in a fixed order, so the result does not depend on the thread
// count. Built for baseline x86-64: it only hands rows to the ISA-specific code.
#include <vector>

#include "core/parallel.h"
#include "cpu/act/kernels.h"

#ifdef CNNKIT_X86
namespace cnnkit {
namespace {

float weight_of_row(const PreluShape& s, const float* weight, int64_t r) {
  return weight[s.weight_count == 1 ? 0 : r % s.channels];
}

void forward(const PreluRowKernels& k, const PreluShape& s, const float* x, const float* weight,
             float* y) {
  parallel_for(s.outer * s.channels, s.inner, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      k.forward(x + r * s.inner, y + r * s.inner, s.inner, weight_of_row(s, weight, r));
    }
  });
}

void backward(const PreluRowKernels& k, const PreluShape& s, const float* dy, const float* x,
              const float* weight, float* dx, float* dweight) {
  const int64_t rows = s.outer * s.channels;
  std::vector<double> row_sums(static_cast<size_t>(rows));
  parallel_for(rows, 2 * s.inner, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t at = r * s.inner;
      row_sums[static_cast<size_t>(r)] =
          k.backward(dy + at, x + at, dx + at, s.inner, weight_of_row(s, weight, r));
    }
  });
  std::vector<double> totals(static_cast<size_t>(s.weight_count), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    totals[static_cast<size_t>(s.weight_count == 1 ? 0 : r % s.channels)] +=
        row_sums[static_cast<size_t>(r)];
  }
  for (int64_t q = 0; q < s.weight_count; ++q) {
    dweight[q] = static_cast<float>(totals[static_cast<size_t>(q)]);
  }
}

}  // namespace

void prelu_forward_avx2(const PreluShape& s, const float* x, const float* weight, float* y) {
  forward(prelu_rows_avx2, s, x, weight, y);
}
void prelu_backward_avx2(const PreluShape& s, const float* dy, const float* x,
                         const float* weight, float* dx, float* dweight) {
  backward(prelu_rows_avx2, s, dy, x, weight, dx, dweight);
}
void prelu_forward_avx512(const PreluShape& s, const float* x, const float* weight, float* y) {
  forward(prelu_rows_avx512, s, x, weight, y);
}
void prelu_backward_avx512(const PreluShape& s, const float* dy, const float* x,
                           const float* weight, float* dx, float* dweight) {
  backward(prelu_rows_avx512, s, dy, x, weight, dx, dweight);
}

}  // namespace cnnkit
#endif  // CNNKIT_X86
