// Single-precision matrix multiply used by im2col convolution and linear.
#pragma once
#include <cstdint>
#include <vector>

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

// op(A) [M, K] packed once, for many products with it (a layer's weights):
// the blocked kernel that the ISA cap selects at packing time lays out the
// copy in its own register-tile strips and is recorded with it. The layout
// depends on that kernel and K only, so a changed thread count reads it the
// same; under a changed ISA cap the copy must be packed again (usable() says
// whether it may run now, sgemm_packed refuses it otherwise).
class PackedMatrix {
 public:
  PackedMatrix() = default;
  PackedMatrix(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda);

  int64_t rows() const { return M_; }
  int64_t depth() const { return K_; }
  // The kernel that packed it ("" when default constructed).
  const char* kernel() const;
  // Packed (not default constructed) by the kernel the ISA cap selects now.
  bool usable() const;

 private:
  friend void sgemm_packed(const PackedMatrix& a, bool trans_b, int64_t N, float alpha, const float* B,
                           int64_t ldb, float beta, float* C, int64_t ldc);
  const void* kernel_ = nullptr;  // the PackedSgemmKernel (cpu/gemm/kernels.h) that packed it
  int64_t M_ = 0, K_ = 0;
  std::vector<float> data_;
};

// C[M,N] = alpha * A * op(B) + beta * C with A packed (M = a.rows(), K =
// a.depth()); op(B), C and beta as in sgemm. Throws a Value error where
// `a` is not usable().
void sgemm_packed(const PackedMatrix& a, bool trans_b, int64_t N, float alpha, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc);

}  // namespace cnnkit
