// sgemm: the ordered list of implementations, widest ISA first, reference last.
#include "cnnkit/gemm.h"
#include "cnnkit/isa.h"
#include "core/registry.h"
#include "cpu/gemm/kernels.h"

namespace cnnkit {
namespace {

struct GemmShape {
  int64_t M, N, K;
  bool trans_a, trans_b;
};
using SgemmImpl = KernelImpl<GemmShape, SgemmFn>;

// Up to how many rows of C the unpacked small-M path beats the blocked one,
// which packs all of op(B) per call. Zen 5, 2 cores, best of 9 calls, blocked
// time / small-M time at 2 | 1 threads, over linear forwards (trans_b:
// 3136->1024, 400->120, 784->25), linear input gradients and im2col-like
// products (3136x1024, 3136x576, 196x1152, 400x120, 784x150):
//  - AVX-512: M <= 8 wins everywhere (1.06-4.6). At M = 12-32 the products
//    without trans_b win 1.03-2.2 | 1.03-2.0 and the trans_b ones with
//    K >= 256 1.15-3.4 | 1.15-2.9 (dot products over K); the conv weight
//    gradient shape (trans_b, K = 100) loses from M = 12 (0.48-0.88). At
//    M = 48-64 the blocked kernel starts to win (0.81-1.2), except where
//    op(B) is large (N * K >= 3M floats: packing it is a pass over 12 MB or
//    more): 1024x3136 and 3136x1024 (linear 3136->1024 at batch 64) 1.15-1.48
//    at M = 64, 2048x2048 1.03-1.14; at 1.6-2.1M floats M = 64 measured
//    0.94-1.11 and stays blocked.
//  - AVX2: M <= 3 wins everywhere (1.5-3.6); M = 4-8 without trans_b or
//    with K >= 256 1.13-3.3 (0.98 once); trans_b with K = 100 loses from
//    M = 6 (0.88-0.94); M = 12-16 without trans_b 1.11-1.63, with trans_b
//    mixed (0.78-1.36).
// Transposed A was not measured beyond the first rules and keeps them.
bool few_rows_avx512(const GemmShape& s) {
  if (s.M <= 8) return true;
  if (s.trans_a || (s.trans_b && s.K < 256)) return false;
  const bool large_b = static_cast<double>(s.N) * static_cast<double>(s.K) >= 3e6;
  return s.M <= 32 || (s.M <= 64 && large_b);
}
bool few_rows_avx2(const GemmShape& s) {
  if (s.M <= 3) return true;
  if (s.trans_a) return false;
  return (s.M <= 8 && (!s.trans_b || s.K >= 256)) || (s.M <= 16 && !s.trans_b);
}

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
  select_kernel(kSgemmImpls, GemmShape{M, N, K, trans_a, trans_b})
      .run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

std::vector<SgemmPath> sgemm_paths(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  const SgemmImpl& rule = select_kernel(kSgemmImpls, GemmShape{M, N, K, trans_a, trans_b});
  std::vector<SgemmPath> paths{{rule.name, rule.run}};
#ifdef CNNKIT_X86
  // The widest enabled ISA's pair: entries 0-1 for AVX-512, 2-3 for AVX2.
  const size_t pair = isa_enabled(Isa::Avx512) ? 0 : isa_enabled(Isa::Avx2) ? 2 : 4;
  for (size_t i = pair; i < pair + 2 && i < 4; ++i) {
    if (kSgemmImpls[i].run != rule.run) paths.push_back({kSgemmImpls[i].name, kSgemmImpls[i].run});
  }
#endif
  return paths;
}

const char* sgemm_implementation(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  return select_kernel(kSgemmImpls, GemmShape{M, N, K, trans_a, trans_b}).name;
}

}  // namespace cnnkit
