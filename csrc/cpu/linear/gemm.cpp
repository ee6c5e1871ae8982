// Linear as one SGEMM per product; the bias is preloaded into y so the GEMM
// adds it with beta = 1 instead of making a second pass over y. Whether a
// product takes sgemm's small-M or blocked path is measured per shape when
// autotuning (cnnkit/autotune.h), as conv2d's algorithm is: the products of
// one layer recur every step, and where the two paths cross depends on the
// machine's caches and bandwidth more than a rule can say.
#include <string>
#include <vector>

#include "cnnkit/autotune.h"
#include "cnnkit/gemm.h"
#include "cnnkit/linear.h"
#include "core/measure.h"
#include "core/parallel.h"
#include "cpu/gemm/kernels.h"

namespace cnnkit {

namespace {

// Columns per work item of the bias-gradient column sums.
constexpr int64_t kColumns = 64;

// C = op(A) op(B) (+ C with beta = 1) by the measured path: `product(fn)`
// computes the call's product with kernel fn into its own output, and is
// what the measurement times (so it allocates nothing). Empty products and
// autotuning off: sgemm() and its rule.
template <class Product>
void measured_gemm(const char* what, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                   Product&& product) {
  if (M <= 0 || N <= 0 || K <= 0 || !autotune_enabled()) {
    product(sgemm);
    return;
  }
  const std::vector<SgemmPath> paths = sgemm_paths(M, N, K, trans_a, trans_b);
  const std::string key = std::string("linear ") + what + ' ' + std::to_string(M) + ' ' + std::to_string(N) +
                          ' ' + std::to_string(K) + autotune_context();
  const std::string cached = paths.size() > 1 ? autotune_lookup(key) : std::string(paths[0].name);
  for (const SgemmPath& path : paths) {
    if (cached == path.name) {
      product(path.run);
      return;
    }
  }
  std::vector<const SgemmPath*> cands;
  for (const SgemmPath& path : paths) cands.push_back(&path);
  const SgemmPath* best = measure_fastest(cands, [&](const SgemmPath& path) { product(path.run); });
  autotune_store(key, best->name);
  product(best->run);
}

}  // namespace

void linear_forward(const float* x, const float* weight, const float* bias, float* y, int64_t M,
                    int64_t in, int64_t out) {
  measured_gemm("forward", M, out, in, false, true, [&](SgemmFn gemm) {
    if (bias != nullptr) {
      parallel_for(M, out, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t j = 0; j < out; ++j) y[r * out + j] = bias[j];
        }
      });
    }
    gemm(false, true, M, out, in, 1.0f, x, in, weight, in, bias != nullptr ? 1.0f : 0.0f, y, out);
  });
}

void linear_backward(const float* dy, const float* x, const float* weight, int64_t M, int64_t in,
                     int64_t out, float* dx, float* dweight, float* dbias) {
  if (dx != nullptr) {
    measured_gemm("input_grad", M, in, out, false, false, [&](SgemmFn gemm) {
      gemm(false, false, M, in, out, 1.0f, dy, out, weight, in, 0.0f, dx, in);
    });
  }
  if (dweight != nullptr) {
    measured_gemm("weight_grad", out, in, M, true, false, [&](SgemmFn gemm) {
      gemm(true, false, out, in, M, 1.0f, dy, out, x, in, 0.0f, dweight, in);
    });
  }
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
