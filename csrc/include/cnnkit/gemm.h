// Single-precision matrix multiply used by im2col convolution and linear.
#pragma once
#include <cstdint>

namespace cnnkit {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major.
// op(A) is A (lda >= K) or, with trans_a, A stored as [K,M] (lda >= M); same for B.
// beta == 0 overwrites C without reading it (NaN in C does not leak through).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// The naive triple loop that defines sgemm; kept for tests and as the last resort.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc);

// Name of the implementation sgemm would use now for a product of these sizes
// (for build_info and tests); the default reports the path of large products.
const char* sgemm_implementation(int64_t M = INT64_MAX, int64_t N = INT64_MAX, int64_t K = INT64_MAX,
                                 bool trans_a = false, bool trans_b = false);

}  // namespace cnnkit
