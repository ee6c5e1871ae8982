// Every SGEMM implementation, declared once for the dispatcher and the tests.
// They are called only through sgemm() (dispatch.cpp), which answers empty
// products itself: each may assume M, N, K >= 1 and alpha != 0.
#pragma once
#include <cstdint>
#include <vector>

#include "cnnkit/isa.h"

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

// A blocked kernel's pre-packed-A entry points (blocked_impl.h's
// pack_a_blocked and sgemm_blocked with a_packed), one per ISA build, with the
// buffer size its layout needs. `run` reads op(A) only from `a_packed`.
struct PackedSgemmKernel {
  const char* name;
  Isa isa;
  int64_t (*floats)(int64_t M, int64_t K);
  void (*pack)(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* dst);
  void (*run)(const float* a_packed, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc);
};
extern const PackedSgemmKernel kPackedSgemmScalar;
extern const PackedSgemmKernel kPackedSgemmAvx2;
extern const PackedSgemmKernel kPackedSgemmAvx512;
// The one the ISA cap selects now: what PackedMatrix packs with, and what a
// kernel packing its own copy of A per call (conv's tap_gemm) uses.
const PackedSgemmKernel& packed_sgemm_kernel();

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
