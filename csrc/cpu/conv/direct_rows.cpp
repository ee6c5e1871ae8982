// Shapes and bounds of the direct_rows kernels, compiled for the baseline ISA
// so that the AVX2/AVX-512 builds of direct_rows_impl.h share no inline code.
#include "cpu/conv/kernels.h"

namespace cnnkit {

bool direct_rows_fits(const Conv2dParams& p) {
  if (p.stride_h != 1 || p.stride_w != 1) return false;
  if (p.kernel_h * p.kernel_w > kDirectRowsMaxTaps) return false;
  const int64_t hp = p.in_h + p.pad_top + p.pad_bottom, wp = p.in_w + p.pad_left + p.pad_right;
  // Each factor is checked before the product so that nothing overflows.
  if (hp > kDirectRowsMaxFloats || wp > kDirectRowsMaxFloats) return false;
  if (hp * wp > kDirectRowsMaxFloats) return false;
  return p.group_in_channels() <= kDirectRowsMaxFloats / std::max<int64_t>(hp * wp, 1);
}

DirectRowsPlan plan_direct_rows(const Conv2dParams& p, int64_t tile_floats) {
  DirectRowsPlan plan{};
  plan.group_in_channels = p.group_in_channels();
  plan.group_out_channels = p.group_out_channels();
  plan.reduction = p.reduction();
  plan.padded_w = p.in_w + p.pad_left + p.pad_right;
  plan.plane = (p.in_h + p.pad_top + p.pad_bottom) * plan.padded_w;
  plan.ext_len = (p.out_h - 1) * plan.padded_w + p.out_w;
  plan.ext_stride = (plan.ext_len + tile_floats - 1) / tile_floats * tile_floats;
  plan.input_floats = plan.group_in_channels * plan.plane + tile_floats;
  plan.items = p.batch * p.groups;
  plan.work_per_item = work_per_item(plan.items, {plan.group_out_channels, plan.reduction, plan.ext_len});
  return plan;
}

}  // namespace cnnkit
