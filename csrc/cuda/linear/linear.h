// linear (y = x @ w.T + b) and its gradients on the GPU, as tiled SGEMMs: x (rows, in),
// w (out, in), y (rows, out). Drivers are templates over the executor, as conv/conv.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/common/reduce.h"
#include "cuda/gemm/gemm.h"

namespace cnnkit::cuda::linear {

struct LinearShape {
  int64_t rows = 0, in = 0, out = 0;
};

template <class Exec>
void forward(Exec& ex, const LinearShape& d, const float* x, const float* w, const float* bias, float* y) {
  gemm::MatrixStore s;
  s.c = y, s.ldc = d.out, s.bias = bias;
  // B read as rows of C's columns is w itself: (out, in).
  gemm::product(ex, gemm::Strided{x, d.in, 1, 0}, gemm::Strided{w, d.in, 1, 0}, s, gemm::whole(d.rows, d.out, d.in));
}

template <class Exec>
void backward(Exec& ex, const LinearShape& d, const float* dy, const float* x, const float* w, float* dx, float* dw,
              float* db) {
  if (db != nullptr) ex.row_sums(d.out, ChannelSum{dy, d.out, 1, d.rows}, db);
  if (dx != nullptr) {  // dx = dy @ w
    gemm::MatrixStore s;
    s.c = dx, s.ldc = d.in;
    gemm::product(ex, gemm::Strided{dy, d.out, 1, 0}, gemm::Strided{w, 1, d.in, 0}, s, gemm::whole(d.rows, d.in, d.out));
  }
  if (dw != nullptr) {  // dw = dy.T @ x, summed over the rows in order
    gemm::MatrixStore s;
    s.c = dw, s.ldc = d.in;
    gemm::product(ex, gemm::Strided{dy, 1, d.out, 0}, gemm::Strided{x, 1, d.in, 0}, s, gemm::whole(d.out, d.in, d.rows));
  }
}

// The launchers: device pointers (bias, dx, dw, db may be null), the caller's stream.
void linear_forward(const LinearShape& d, const float* x, const float* w, const float* bias, float* y,
                    cudaStream_t stream);
void linear_backward(const LinearShape& d, const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, cudaStream_t stream);

}  // namespace cnnkit::cuda::linear
