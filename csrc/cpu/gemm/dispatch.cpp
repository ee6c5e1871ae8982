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
// which packs all of op(B) per call: with a few rows that copy costs as much
// as the multiply. Dot products over K (trans_b) keep winning further with a
// long K; short-K trans_b products (conv weight gradients) stop early; with a
// large op(B) (3M floats and more: packing is a pass over 12 MB) AVX-512
// keeps the small-M path up to 64 rows. Transposed A keeps the first cut.
// Linear layers measure the two paths per shape instead (linear/gemm.cpp).
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
