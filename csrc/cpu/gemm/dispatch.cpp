// sgemm: the ordered list of implementations, widest ISA first, reference last.
#include <string>

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

// The blocked kernels with a pre-packed A, widest ISA first.
const PackedSgemmKernel* const kPackedKernels[] = {
#ifdef CNNKIT_X86
    &kPackedSgemmAvx512,
    &kPackedSgemmAvx2,
#endif
    &kPackedSgemmScalar,
};

// No product to form: C = beta * C, with beta == 0 writing zeros (NaN in C
// does not survive), here once for every kernel, which may then assume
// M, N, K >= 1 and alpha != 0.
void scale_only(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
  }
}

}  // namespace

const PackedSgemmKernel& packed_sgemm_kernel() {
  for (const PackedSgemmKernel* k : kPackedKernels) {
    if (isa_enabled(k->isa)) return *k;
  }
  return kPackedSgemmScalar;
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) return scale_only(M, N, beta, C, ldc);
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

PackedMatrix::PackedMatrix(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda) : M_(M), K_(K) {
  CNNKIT_CHECK(M >= 0 && K >= 0, ErrorKind::Value,
               "PackedMatrix: M and K must be >= 0, got " + std::to_string(M) + " and " + std::to_string(K));
  const PackedSgemmKernel& k = packed_sgemm_kernel();
  kernel_ = &k;
  if (M == 0 || K == 0) return;
  data_.resize(static_cast<size_t>(k.floats(M, K)));
  k.pack(trans_a, M, K, A, lda, data_.data());
}

const char* PackedMatrix::kernel() const {
  return kernel_ != nullptr ? static_cast<const PackedSgemmKernel*>(kernel_)->name : "";
}

bool PackedMatrix::usable() const { return kernel_ != nullptr && kernel_ == &packed_sgemm_kernel(); }

void sgemm_packed(const PackedMatrix& a, bool trans_b, int64_t N, float alpha, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc) {
  CNNKIT_CHECK(a.usable(), ErrorKind::Value,
               a.kernel_ == nullptr
                   ? std::string("sgemm_packed: the matrix was never packed")
                   : std::string("sgemm_packed: the matrix was packed for ") + a.kernel() +
                         ", but the ISA cap now selects " + packed_sgemm_kernel().name + ": pack it again");
  if (a.M_ <= 0 || N <= 0) return;
  if (a.K_ <= 0 || alpha == 0.0f) return scale_only(a.M_, N, beta, C, ldc);
  const auto* kernel = static_cast<const PackedSgemmKernel*>(a.kernel_);
  kernel->run(a.data_.data(), trans_b, a.M_, N, a.K_, alpha, B, ldb, beta, C, ldc);
}

}  // namespace cnnkit
