// Every SGEMM implementation, declared once for the dispatcher and the tests.
// They are called only through sgemm() (dispatch.cpp), which answers empty
// products itself: each may assume M, N, K >= 1 and alpha != 0.
#pragma once
#include <cstdint>

namespace cnnkit {

#define CNNKIT_SGEMM_SIGNATURE(name)                                                          \
  void name(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,       \
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, \
            int64_t ldc)

CNNKIT_SGEMM_SIGNATURE(sgemm_blocked_scalar);
CNNKIT_SGEMM_SIGNATURE(sgemm_blocked_avx2);
CNNKIT_SGEMM_SIGNATURE(sgemm_blocked_avx512);
CNNKIT_SGEMM_SIGNATURE(sgemm_small_m_avx2);
CNNKIT_SGEMM_SIGNATURE(sgemm_small_m_avx512);

}  // namespace cnnkit
