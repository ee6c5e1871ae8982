// Linear as one SGEMM per product; the bias is preloaded into y so the GEMM
// adds it with beta = 1 instead of making a second pass over y.
#include "cnnkit/gemm.h"
#include "cnnkit/linear.h"
#include "core/parallel.h"

namespace cnnkit {

namespace {

// Columns per work item of the bias-gradient column sums.
constexpr int64_t kColumns = 64;

}  // namespace

void linear_forward(const float* x, const float* weight, const float* bias, float* y, int64_t M,
                    int64_t in, int64_t out) {
  if (bias != nullptr) {
    parallel_for(M, out, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = 0; j < out; ++j) y[r * out + j] = bias[j];
      }
    });
  }
  sgemm(false, true, M, out, in, 1.0f, x, in, weight, in, bias != nullptr ? 1.0f : 0.0f, y, out);
}

void linear_backward(const float* dy, const float* x, const float* weight, int64_t M, int64_t in,
                     int64_t out, float* dx, float* dweight, float* dbias) {
  if (dx != nullptr) sgemm(false, false, M, in, out, 1.0f, dy, out, weight, in, 0.0f, dx, in);
  if (dweight != nullptr) sgemm(true, false, out, in, M, 1.0f, dy, out, x, in, 0.0f, dweight, in);
  if (dbias != nullptr) {
    // Summed in double, row by row, so the result does not depend on the thread count.
    const int64_t blocks = (out + kColumns - 1) / kColumns;
    parallel_for(blocks, M * kColumns, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t j0 = b * kColumns;
        const int64_t width = out - j0 < kColumns ? out - j0 : kColumns;
        double sum[kColumns] = {};
        for (int64_t r = 0; r < M; ++r) {
          for (int64_t j = 0; j < width; ++j) sum[j] += dy[r * out + j0 + j];
        }
        for (int64_t j = 0; j < width; ++j) dbias[j0 + j] = static_cast<float>(sum[j]);
      }
    });
  }
}

}  // namespace cnnkit
