// Every SGEMM implementation, declared once for the dispatcher and the tests.
// They are called only through sgemm() (dispatch.cpp), which answers empty
// products itself: each may assume M, N, K >= 1 and alpha != 0.
#pragma once
#include <cstdint>
#include <vector>

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

using SgemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                         const float*, int64_t, float, float*, int64_t);
struct SgemmPath {
  const char* name;
  SgemmFn run;
};
// The paths a product of these sizes can take under the ISA cap, for a
// measured choice: the one sgemm() picks by its rule first, then the other
// of the widest enabled ISA's small-M and blocked kernels. Same contract as
// the kernels: M, N, K >= 1 and alpha != 0.
std::vector<SgemmPath> sgemm_paths(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b);

}  // namespace cnnkit
