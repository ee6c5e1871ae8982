// Bounds and weight packing of the plan's direct convolution (plan_direct.h),
// compiled for the baseline ISA.
#include "cpu/plan/plan_direct.h"

#include <algorithm>

#include "cnnkit/errors.h"
#include "cnnkit/isa.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {

bool plan_direct_fits(const Conv2dParams& p) {
  if (p.groups != 1 || p.dilation_w != 1 || !direct_cvec_fits(p)) return false;
  if (p.stride_w == 1) return p.kernel_w == 1 || p.kernel_w == 3 || p.kernel_w == 5;
  return p.stride_w == 2 && (p.kernel_w == 1 || p.kernel_w == 3);
}

bool pack_plan_direct(const Conv2dParams& p, const float* w, const float* bias, PlanDirectConv* out) {
#ifdef CNNKIT_X86
  if (!plan_direct_fits(p)) return false;
  PlanDirectConv c;
  if (isa_enabled(Isa::Avx512)) {
    c.kernel = plan_direct_avx512;
    c.name = "plan_direct_avx512";
    c.lanes = 16;
  } else if (isa_enabled(Isa::Avx2)) {
    c.kernel = plan_direct_avx2;
    c.name = "plan_direct_avx2";
    c.lanes = 8;
  } else {
    return false;
  }
  const int64_t K = p.out_channels, red = p.reduction(), L = c.lanes;
  c.blocks = (K + L - 1) / L;
  c.weight_floats = checked_mul(c.blocks * red, L, "conv2d packed weight");
  c.packed.assign(static_cast<size_t>(c.weight_floats + c.blocks * L), 0.0f);
  for (int64_t k = 0; k < K; ++k) {
    float* dst = c.packed.data() + (k / L) * red * L + k % L;
    for (int64_t i = 0; i < red; ++i) dst[i * L] = w[k * red + i];
    if (bias != nullptr) c.packed[static_cast<size_t>(c.weight_floats + k)] = bias[k];
  }
  *out = std::move(c);
  return true;
#else
  (void)p, (void)w, (void)bias, (void)out;
  return false;
#endif
}

}  // namespace cnnkit
