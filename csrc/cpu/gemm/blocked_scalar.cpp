// Blocked SGEMM for baseline x86-64 / any CPU: the portable 4x8 loop kernel.
#include "cpu/gemm/blocked_impl.h"
#include "cpu/gemm/kernels.h"

namespace cnnkit {

void sgemm_blocked_scalar(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  sgemm_blocked<GenericKernel<4, 8>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const PackedSgemmKernel kPackedSgemmScalar = {
    "blocked_scalar", Isa::Scalar, packed_a_floats<GenericKernel<4, 8>>, pack_a_blocked<GenericKernel<4, 8>>,
    sgemm_blocked_packed<GenericKernel<4, 8>>};

}  // namespace cnnkit
