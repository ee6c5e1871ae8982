// sgemm: the ordered list of implementations, widest ISA first, reference last.
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

// Up to how many rows of C the unpacked small-M path beats the blocked one.
// Measured on Zen 5 (2 cores, interleaved medians of 7; ratio = blocked time /
// small-M time, 1 and 2 threads) over linear forward (3136->1024, 400->120,
// 84->10), its input gradient and the LeNet im2col GEMMs:
//  - AVX-512: M = 1: 1.2..17x (3136->1024 forward: 17x at 1 thread, 4.8x at
//    2); M = 8: 1.06..3.4x everywhere; M = 12: 0.87..0.88 on the conv weight
//    gradient (N = 150, K = 100) and the 400->120 input gradient.
//  - AVX2 (capped): M = 1: 1.1..8.8x; M = 3: 1.2..2.5x; M = 4: 0.84..2.1
//    (3136->1024 input gradient 0.6..1.1, 84->10 input gradient 0.84);
//    M = 5: 0.89..1.6. Its tiles (12 accumulators) cover fewer rows per pass.
bool few_rows_avx512(const GemmShape& s) { return s.M <= 8; }
bool few_rows_avx2(const GemmShape& s) { return s.M <= 3; }

const SgemmImpl kSgemmImpls[] = {
#ifdef CNNKIT_X86
    {"small_m_avx512", Isa::Avx512, few_rows_avx512, sgemm_small_m_avx512},
    {"blocked_avx512", Isa::Avx512, nullptr, sgemm_blocked_avx512},
    {"small_m_avx2", Isa::Avx2, few_rows_avx2, sgemm_small_m_avx2},
    {"blocked_avx2", Isa::Avx2, nullptr, sgemm_blocked_avx2},
#endif
    {"blocked_scalar", Isa::Scalar, nullptr, sgemm_blocked_scalar},
    {"reference", Isa::Scalar, nullptr, sgemm_reference},
};

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  // No product to form: C = beta * C, with beta == 0 writing zeros (NaN in C
  // does not survive), here once for every kernel, which may then assume
  // M, N, K >= 1 and alpha != 0.
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    }
    return;
  }
  select_kernel(kSgemmImpls, GemmShape{M}).run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                                                 beta, C, ldc);
}

const char* sgemm_implementation(int64_t M) { return select_kernel(kSgemmImpls, GemmShape{M}).name; }

}  // namespace cnnkit
