// Linear as one SGEMM per product; the bias is preloaded into y so the GEMM
// adds it with beta = 1 instead of making a second pass over y. Whether a
// product takes sgemm's small-M or blocked path is measured per shape when
// autotuning (cnnkit/autotune.h), as conv2d's algorithm is: the products of
// one layer recur every step, and where the two paths cross depends on the
// machine's caches and bandwidth more than a rule can say.
#include <algorithm>
#include <string>
#include <vector>

#include "cnnkit/autotune.h"
#include "cnnkit/gemm.h"
#include "cnnkit/linear.h"
#include "core/measure.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/gemm/kernels.h"

namespace cnnkit {

namespace {

// Columns per work item of the bias-gradient column sums.
constexpr int64_t kColumns = 64;

// A product with fewer rows than columns (a small batch) can also run
// transposed, C^T = op(B)^T op(A)^T into a scratch buffer, then copied out:
// sgemm's blocked path then packs blocks of the weight (now the many-row
// operand) into L2 right before each use instead of packing all of it up
// front, and the batch is the narrow operand, packed once. Only for C of at
// most this many floats.
constexpr int64_t kTransposedMaxFloats = int64_t{4} << 20;

// dst[r * N + j] = src[j * M + r] (+ bias[j]): C from its transpose.
void transpose_into(const float* src, int64_t M, int64_t N, const float* bias, float* dst) {
  constexpr int64_t kTile = 32;
  parallel_for((N + kTile - 1) / kTile, kTile * M, [&](int64_t t0, int64_t t1) {
    for (int64_t r0 = 0; r0 < M; r0 += kTile) {
      const int64_t r1 = std::min(M, r0 + kTile);
      for (int64_t j = t0 * kTile; j < std::min(N, t1 * kTile); ++j) {
        const float b = bias != nullptr ? bias[j] : 0.0f;
        for (int64_t r = r0; r < r1; ++r) dst[r * N + j] = src[j * M + r] + b;
      }
    }
  });
}

// One way to compute a linear product: one of sgemm's paths on C, or
// (transposed) sgemm on C^T then transpose_into.
struct LinearPath {
  const char* name;
  SgemmFn gemm;
  bool transposed;
};

// The product C[M, N] (K deep) by the measured path: `product(gemm)`
// computes it straight into the call's output, `transposed(gemm, ct)` its
// transpose into ct and copies it out; either is what the measurement times
// (nothing is allocated but the scratch buffer). Empty products and
// autotuning off: sgemm() and its rule.
template <class Product, class Transposed>
void measured_gemm(const char* what, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                   Product&& product, Transposed&& transposed) {
  if (M <= 0 || N <= 0 || K <= 0 || !autotune_enabled()) {
    product(sgemm);
    return;
  }
  std::vector<LinearPath> paths;
  for (const SgemmPath& path : sgemm_paths(M, N, K, trans_a, trans_b)) paths.push_back({path.name, path.run, false});
  if (M < N && M * N <= kTransposedMaxFloats) paths.push_back({"transposed", sgemm, true});
  auto run = [&](const LinearPath& path) {
    if (path.transposed) {
      transposed(path.gemm, thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(M * N)));
    } else {
      product(path.gemm);
    }
  };
  const std::string key = std::string("linear ") + what + ' ' + std::to_string(M) + ' ' + std::to_string(N) +
                          ' ' + std::to_string(K) + autotune_context();
  const std::string cached = paths.size() > 1 ? autotune_lookup(key) : std::string(paths[0].name);
  for (const LinearPath& path : paths) {
    if (cached == path.name) {
      run(path);
      return;
    }
  }
  std::vector<const LinearPath*> cands;
  for (const LinearPath& path : paths) cands.push_back(&path);
  const LinearPath* best = measure_fastest(cands, run);
  autotune_store(key, best->name);
  run(*best);
}

}  // namespace

void linear_forward(const float* x, const float* weight, const float* bias, float* y, int64_t M,
                    int64_t in, int64_t out) {
  measured_gemm(
      "forward", M, out, in, false, true,
      [&](SgemmFn gemm) {
        if (bias != nullptr) {
          parallel_for(M, out, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
              for (int64_t j = 0; j < out; ++j) y[r * out + j] = bias[j];
            }
          });
        }
        gemm(false, true, M, out, in, 1.0f, x, in, weight, in, bias != nullptr ? 1.0f : 0.0f, y, out);
      },
      [&](SgemmFn gemm, float* yt) {
        gemm(false, true, out, M, in, 1.0f, weight, in, x, in, 0.0f, yt, M);
        transpose_into(yt, M, out, bias, y);
      });
}

void linear_forward_packed(const float* x, const PackedMatrix& weight, const float* bias, float* y, int64_t M) {
  const int64_t out = weight.rows(), in = weight.depth();
  if (M <= 0 || out <= 0) return;
  if (M == 1) {
    // y^T is y: the bias goes in first and the product adds onto it.
    for (int64_t j = 0; j < out; ++j) y[j] = bias != nullptr ? bias[j] : 0.0f;
    sgemm_packed(weight, true, 1, 1.0f, x, in, 1.0f, y, 1);
    return;
  }
  float* yt = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(M * out));
  sgemm_packed(weight, true, M, 1.0f, x, in, 0.0f, yt, M);
  transpose_into(yt, M, out, bias, y);
}

void linear_backward(const float* dy, const float* x, const float* weight, int64_t M, int64_t in,
                     int64_t out, float* dx, float* dweight, float* dbias) {
  if (dx != nullptr) {
    measured_gemm(
        "input_grad", M, in, out, false, false,
        [&](SgemmFn gemm) { gemm(false, false, M, in, out, 1.0f, dy, out, weight, in, 0.0f, dx, in); },
        [&](SgemmFn gemm, float* dxt) {
          gemm(true, true, in, M, out, 1.0f, weight, in, dy, out, 0.0f, dxt, M);
          transpose_into(dxt, M, in, nullptr, dx);
        });
  }
  if (dweight != nullptr) {
    measured_gemm(
        "weight_grad", out, in, M, true, false,
        [&](SgemmFn gemm) { gemm(true, false, out, in, M, 1.0f, dy, out, x, in, 0.0f, dweight, in); },
        [&](SgemmFn gemm, float* dwt) {
          gemm(true, false, in, out, M, 1.0f, x, in, dy, out, 0.0f, dwt, out);
          transpose_into(dwt, out, in, nullptr, dweight);
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
