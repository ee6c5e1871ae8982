// sgemm: the ordered list of implementations, widest ISA first, reference last.
#include <cstdlib>

#include "cnnkit/gemm.h"
#include "core/registry.h"
#include "cpu/gemm/kernels.h"

namespace cnnkit {
namespace {

struct GemmShape {
  int64_t M;
};
using SgemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                         const float*, int64_t, float, float*, int64_t);
using SgemmImpl = KernelImpl<GemmShape, SgemmFn>;

bool few_rows(const GemmShape& s) {
  static const int64_t limit = std::getenv("CNNKIT_SMALL_M") ? std::atoll(std::getenv("CNNKIT_SMALL_M")) : 8;
  return s.M <= limit;
}

const SgemmImpl kSgemmImpls[] = {
#ifdef CNNKIT_X86
    {"small_m_avx512", Isa::Avx512, few_rows, sgemm_small_m_avx512},
    {"blocked_avx512", Isa::Avx512, nullptr, sgemm_blocked_avx512},
    {"small_m_avx2", Isa::Avx2, few_rows, sgemm_small_m_avx2},
    {"blocked_avx2", Isa::Avx2, nullptr, sgemm_blocked_avx2},
#endif
    {"blocked_scalar", Isa::Scalar, nullptr, sgemm_blocked_scalar},
    {"reference", Isa::Scalar, nullptr, sgemm_reference},
};

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  select_kernel(kSgemmImpls, GemmShape{M}).run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                                                 beta, C, ldc);
}

const char* sgemm_implementation(int64_t M) { return select_kernel(kSgemmImpls, GemmShape{M}).name; }

}  // namespace cnnkit
